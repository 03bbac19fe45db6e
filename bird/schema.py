"""Database schemas, and their rendering as CREATE TABLE text for prompts.

The schema is read from the SQLite file itself (the train split of the release has no
tables.json); `<split>_tables.json` is the fallback when a database file is absent. Rendering is
deterministic: tables and columns in database order, samples in the order SQLite returns them
from an unchanged file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from bird.data import BirdDataError, BirdSplit
from bird.descriptions import ColumnDescription, read_descriptions

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.db import Table

SAMPLE_QUERY_SECONDS = 0.5  # a sample that needs a long scan is not worth waiting for
SAMPLE_VALUE_CHARS = 40
COMMENT_CHARS = 200


class ForeignKey(BaseModel):
    columns: list[str]
    ref_table: str
    ref_columns: list[str]


class ColumnSchema(BaseModel):
    name: str
    type: str = ""
    description: str = ""
    value_description: str = ""
    samples: list[str] = []  # already rendered as SQL literals


class TableSchema(BaseModel):
    name: str
    columns: list[ColumnSchema]
    primary_key: list[str] = []
    foreign_keys: list[ForeignKey] = []


class DatabaseSchema(BaseModel):
    db_id: str
    tables: list[TableSchema]


# SQLite's reserved words (sqlite.org/lang_keywords.html): names equal to one need quotes.
_SQLITE_KEYWORDS = frozenset(
    """ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE
    BEGIN BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE
    CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE
    DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE
    EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS
    HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS
    ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL
    NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY
    RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING
    RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION
    TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW
    WITH WITHOUT""".split()
)


def quote_identifier(name: str) -> str:
    """Quote only where SQLite needs it, so prompts stay readable (BIRD has `Free Meal Count`)."""
    plain = name.replace("_", "a").isascii() and name.replace("_", "a").isalnum()
    if plain and not name[0].isdigit() and name.upper() not in _SQLITE_KEYWORDS:
        return name
    return always_quote(name)


def always_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(value: object) -> str | None:
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        if len(text) > SAMPLE_VALUE_CHARS:
            text = text[: SAMPLE_VALUE_CHARS - 3] + "..."
        return "'" + text.replace("'", "''") + "'"
    return None  # blobs tell a reader nothing


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    # Our own introspection queries (not model SQL): a read-only connection is enough.
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)


def introspect(connection: sqlite3.Connection) -> Database:
    """sqlite-utils over a connection the caller opened (and closes). It sets nothing on
    the connection (no `PRAGMA recursive_triggers`, no plugin hooks), so the guards the
    caller installed stay as they were; the schema readers here only read through it."""
    # Imported here: sqlite-utils imports pandas where that is installed (most of a second),
    # and most commands never read a schema.
    from sqlite_utils import Database

    return Database(connection, recursive_triggers=False, execute_plugins=False)


def user_tables(database: Database) -> list[str]:
    """Tables (views left out) in creation order: sqlite_master is scanned in rowid order.
    SQLite's own tables (`sqlite_sequence`, `sqlite_stat1`) are left out; names that start
    with `sqlite_` are reserved to SQLite, in any case."""
    return [name for name in database.table_names() if not name.lower().startswith("sqlite_")]


def primary_key(table: Table) -> list[str]:
    """Declared primary key columns, in key order; [] where there is none (sqlite-utils
    names `rowid` there, which no CREATE TABLE declares)."""
    return [] if table.use_rowid else table.pks


def _sample_values(
    connection: sqlite3.Connection, table: str, column: str, count: int
) -> list[str]:
    deadline = time.monotonic() + SAMPLE_QUERY_SECONDS
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        rows = connection.execute(
            f"SELECT DISTINCT {always_quote(column)} FROM {always_quote(table)} "
            f"WHERE {always_quote(column)} IS NOT NULL LIMIT {int(count)}"
        ).fetchall()
    except sqlite3.OperationalError:  # interrupted by the deadline, or an odd column
        rows = []
    finally:
        connection.set_progress_handler(None, 0)
    literals = (_sql_literal(row[0]) for row in rows)
    return [literal for literal in literals if literal is not None]


def read_database_schema(
    db_path: Path,
    db_id: str | None = None,
    descriptions: dict[tuple[str, str], ColumnDescription] | None = None,
    sample_values: int = 3,
) -> DatabaseSchema:
    """Tables, columns, keys and sample values of a SQLite file, with BIRD's descriptions."""
    if not db_path.is_file():
        raise BirdDataError(f"{db_path}: database file not found")
    descriptions = descriptions or {}
    connection = _connect_read_only(db_path)
    try:
        database = introspect(connection)
        tables = []
        for name in user_tables(database):
            table = database.table(name)
            columns = []
            for column in table.columns:  # PRAGMA table_info: hidden columns left out
                description = descriptions.get((name.lower(), column.name.lower()))
                columns.append(
                    ColumnSchema(
                        name=column.name,
                        type=column.type or "",
                        description=_column_comment(description),
                        value_description=description.value_description if description else "",
                        samples=_sample_values(connection, name, column.name, sample_values)
                        if sample_values > 0
                        else [],
                    )
                )
            tables.append(
                TableSchema(
                    name=name,
                    columns=columns,
                    primary_key=primary_key(table),
                    foreign_keys=_foreign_keys(database, table),
                )
            )
    finally:
        connection.close()
    return DatabaseSchema(db_id=db_id or db_path.stem, tables=tables)


def table_columns(db_path: Path) -> dict[str, list[str]]:
    """Table name -> column names, in database order: what SQL rewriting needs to resolve a
    `*` or a correlated column, without descriptions or sample values."""
    schema = read_database_schema(db_path, sample_values=0)
    return {table.name: [column.name for column in table.columns] for table in schema.tables}


def _column_comment(description: ColumnDescription | None) -> str:
    if description is None:
        return ""
    parts = []
    readable = description.readable_name
    if readable and readable.lower().replace(" ", "_") != description.column.lower():
        parts.append(readable)
    if description.description and description.description.lower() != readable.lower():
        parts.append(description.description)
    return ": ".join(parts)


def _foreign_keys(database: Database, table: Table) -> list[ForeignKey]:
    keys = []
    for key in table.foreign_keys:  # in PRAGMA foreign_key_list order, compound keys whole
        ref_columns: list[str | None] = list(key.other_columns)
        if None in ref_columns or (
            ref_columns == ["rowid"] and not _has_column(database, key.other_table, "rowid")
        ):
            # `REFERENCES t` without columns means t's primary key. sqlite-utils resolves that
            # only for a table named in the same case, and names `rowid` for a table without
            # a declared key (not a key a foreign key can use): resolve it as SQLite does,
            # with the name in any case, and leave the columns blank where that fails.
            declared = primary_key(database.table(_table_named(database, key.other_table)))
            blank = [""] * len(key.columns)
            ref_columns = list(declared) if len(declared) == len(key.columns) else blank
        keys.append(
            ForeignKey(
                columns=list(key.columns),
                ref_table=key.other_table,
                ref_columns=[column or "" for column in ref_columns],
            )
        )
    return keys


def _table_named(database: Database, name: str) -> str:
    """The table `name` refers to: SQLite matches table names in any case."""
    return next((table for table in database.table_names() if table.lower() == name.lower()), name)


def _has_column(database: Database, table: str, column: str) -> bool:
    columns = database.table(_table_named(database, table)).columns
    return any(item.name.lower() == column.lower() for item in columns)


def read_tables_json_schema(tables_path: Path, db_id: str) -> DatabaseSchema:
    """Fallback for a database whose file is absent: the Spider-style `<split>_tables.json`."""
    entries = json.loads(tables_path.read_text(encoding="utf-8"))
    entry = next((item for item in entries if item.get("db_id") == db_id), None)
    if entry is None:
        raise BirdDataError(f"{tables_path}: no schema for db_id {db_id!r}")
    table_names = entry["table_names_original"]
    columns_by_table: list[list[ColumnSchema]] = [[] for _ in table_names]
    column_refs: list[tuple[int, str]] = []
    for (table_index, name), column_type in zip(
        entry["column_names_original"], entry["column_types"], strict=True
    ):
        column_refs.append((table_index, name))
        if table_index >= 0:
            columns_by_table[table_index].append(ColumnSchema(name=name, type=column_type.upper()))
    primary_keys: list[list[str]] = [[] for _ in table_names]
    for key in entry.get("primary_keys", []):
        for column_index in key if isinstance(key, list) else [key]:
            table_index, name = column_refs[column_index]
            primary_keys[table_index].append(name)
    foreign_keys: list[list[ForeignKey]] = [[] for _ in table_names]
    for source, target in entry.get("foreign_keys", []):
        source_table, source_column = column_refs[source]
        target_table, target_column = column_refs[target]
        foreign_keys[source_table].append(
            ForeignKey(
                columns=[source_column],
                ref_table=table_names[target_table],
                ref_columns=[target_column],
            )
        )
    tables = [
        TableSchema(
            name=name,
            columns=columns_by_table[index],
            primary_key=primary_keys[index],
            foreign_keys=foreign_keys[index],
        )
        for index, name in enumerate(table_names)
    ]
    return DatabaseSchema(db_id=db_id, tables=tables)


def load_schema(split: BirdSplit, db_id: str, sample_values: int = 3) -> DatabaseSchema:
    """The schema of one of a split's databases, from its file or else from tables.json."""
    descriptions = read_descriptions(split.description_dir(db_id))
    if split.has_database(db_id):
        return read_database_schema(
            split.database_path(db_id), db_id, descriptions, sample_values=sample_values
        )
    if split.tables_path.is_file():
        return read_tables_json_schema(split.tables_path, db_id)
    raise BirdDataError(
        f"no schema for {db_id!r}: neither {split.database_path(db_id)} nor "
        f"{split.tables_path} exists; add the database folder to {split.databases_dir}"
    )


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Levels of detail, richest first; a size budget walks down them until the text fits.
_DETAIL_LEVELS = (
    {"value_descriptions": True, "samples": True, "descriptions": True},
    {"value_descriptions": False, "samples": True, "descriptions": True},
    {"value_descriptions": False, "samples": False, "descriptions": True},
    {"value_descriptions": False, "samples": False, "descriptions": False},
)


def _render_table(
    table: TableSchema, value_descriptions: bool, samples: bool, descriptions: bool
) -> str:
    single_pk = table.primary_key[0] if len(table.primary_key) == 1 else None
    lines: list[tuple[str, str]] = []
    for column in table.columns:
        definition = quote_identifier(column.name)
        if column.type:
            definition += f" {column.type}"
        if column.name == single_pk:
            definition += " PRIMARY KEY"
        comment_parts = []
        if descriptions and column.description:
            comment_parts.append(column.description)
        if samples and column.samples:
            comment_parts.append("examples: " + ", ".join(column.samples))
        if value_descriptions and column.value_description:
            # Last, as it is the longest and the least often needed part of the comment.
            comment_parts.append(f"values: {column.value_description}")
        comment = _truncate("; ".join(comment_parts), COMMENT_CHARS) if comment_parts else ""
        lines.append((definition, comment))
    constraints = []
    if len(table.primary_key) > 1:
        keys = ", ".join(quote_identifier(name) for name in table.primary_key)
        constraints.append(f"PRIMARY KEY ({keys})")
    for key in table.foreign_keys:
        source = ", ".join(quote_identifier(name) for name in key.columns)
        target = ", ".join(quote_identifier(name) for name in key.ref_columns)
        constraints.append(
            f"FOREIGN KEY ({source}) REFERENCES {quote_identifier(key.ref_table)} ({target})"
        )
    items = [definition for definition, _ in lines] + constraints
    body = []
    for position, item in enumerate(items):
        separator = "," if position < len(items) - 1 else ""
        comment = lines[position][1] if position < len(lines) else ""
        body.append(f"  {item}{separator}" + (f" -- {comment}" if comment else ""))
    return f"CREATE TABLE {quote_identifier(table.name)} (\n" + "\n".join(body) + "\n);"


SchemaStyle = Literal["sql", "compact"]
SCHEMA_STYLES: tuple[str, ...] = ("sql", "compact")


def _compact_table(table: TableSchema) -> str:
    """One line: `name(column TYPE, ...)`, primary and foreign keys inline."""
    single_pk = table.primary_key[0] if len(table.primary_key) == 1 else None
    references = {
        column: f"{quote_identifier(key.ref_table)}({quote_identifier(target)})"
        for key in table.foreign_keys
        for column, target in zip(key.columns, key.ref_columns, strict=False)
    }
    parts = []
    for column in table.columns:
        part = quote_identifier(column.name) + (f" {column.type}" if column.type else "")
        if column.name == single_pk:
            part += " PRIMARY KEY"
        if column.name in references:
            part += f" REFERENCES {references[column.name]}"
        parts.append(part)
    if len(table.primary_key) > 1:
        parts.append(f"PRIMARY KEY ({', '.join(map(quote_identifier, table.primary_key))})")
    return f"{quote_identifier(table.name)}({', '.join(parts)})"


def render_schema(
    schema: DatabaseSchema, max_chars: int | None = None, style: SchemaStyle = "sql"
) -> str:
    """CREATE TABLE statements with keys, descriptions and samples as comments; or, in the
    `compact` style, one line per table with its columns, types and keys only (about half
    the tokens: for small models with short contexts).

    With `max_chars`, detail is dropped level by level (value descriptions, then samples, then
    column descriptions) and, if the bare schema still does not fit, trailing tables are left
    out with a note saying how many.
    """
    rendered = ""
    levels = _DETAIL_LEVELS if style == "sql" else _DETAIL_LEVELS[-1:]
    for level in levels:
        if style == "compact":
            tables = [_compact_table(table) for table in schema.tables]
        else:
            tables = [_render_table(table, **level) for table in schema.tables]
        rendered = ("\n" if style == "compact" else "\n\n").join(tables)
        if max_chars is None or len(rendered) <= max_chars:
            return rendered
    kept: list[str] = []
    separator = "\n" if style == "compact" else "\n\n"
    for table_text in tables:
        omitted_after = len(tables) - len(kept) - 1
        if len(separator.join([*kept, table_text]) + _omission_note(omitted_after)) > max_chars:
            break
        kept.append(table_text)
    return separator.join(kept) + _omission_note(len(tables) - len(kept))


def _omission_note(omitted: int) -> str:
    return f"\n\n-- {omitted} more tables omitted to fit the size budget" if omitted else ""
