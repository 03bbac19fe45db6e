"""The symbolic decomposer: a gold query split into a chain of steps without any model.

`builder` is the entry point (`decompose_sql`); `drafts` holds the steps under
construction; `rules` is the ordered `RULES` tuple of transformations, one per module, on
top of sqlglot's optimizer; `text` and `explain` write the steps' titles and explanations.
"""
