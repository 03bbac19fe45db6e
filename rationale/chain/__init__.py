"""The rationale format: a chain of CTE steps, each with a title, an explanation and its SQL.

`format` holds the chain and assembles it into one query; `markdown` renders it as the text a
model reads and writes and parses that text back; `sql_text` and `sql_ast` are the SQL helpers
both sides use.
"""
