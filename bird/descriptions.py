"""Read BIRD's `database_description/*.csv` files: one per table, one row per column.

The released files are messy: UTF-8, UTF-8 with BOM and Windows-1252 all occur, header and
column names carry stray spaces, and file names do not always match the table's case. All of
that is normalised here so that lookups go by (table, column) in lower case.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# Tried in order; latin-1 decodes any byte string, so reading never fails on encoding.
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


class ColumnDescription(BaseModel):
    model_config = ConfigDict(frozen=True)

    table: str
    column: str
    readable_name: str = ""
    description: str = ""
    data_format: str = ""
    value_description: str = ""


def decode_text(data: bytes) -> str:
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte string")


def _clean(value: str | None) -> str:
    """Collapse whitespace (descriptions contain CRLF and runs of spaces)."""
    return " ".join((value or "").split())


def read_description_file(path: Path, table: str | None = None) -> list[ColumnDescription]:
    """Rows of one description CSV; `table` defaults to the file's stem, stripped."""
    table_name = (table or path.stem).strip()
    reader = csv.reader(io.StringIO(decode_text(path.read_bytes()), newline=""))
    rows = list(reader)
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    index = {name: position for position, name in enumerate(header)}
    if "original_column_name" not in index:
        raise ValueError(
            f"{path}:1: header lacks 'original_column_name' (found {rows[0]!r}); "
            f"is this a BIRD database_description file?"
        )

    def cell(row: list[str], name: str) -> str:
        position = index.get(name)
        return _clean(row[position]) if position is not None and position < len(row) else ""

    descriptions = []
    for row in rows[1:]:
        column = cell(row, "original_column_name")
        if not column:
            continue
        descriptions.append(
            ColumnDescription(
                table=table_name,
                column=column,
                readable_name=cell(row, "column_name"),
                description=cell(row, "column_description"),
                data_format=cell(row, "data_format"),
                value_description=cell(row, "value_description"),
            )
        )
    return descriptions


def read_descriptions(description_dir: Path) -> dict[tuple[str, str], ColumnDescription]:
    """(table lower, column lower) -> description, for every CSV in the folder (may be absent)."""
    if not description_dir.is_dir():
        return {}
    found: dict[tuple[str, str], ColumnDescription] = {}
    for path in sorted(description_dir.glob("*.csv")):
        for description in read_description_file(path):
            found[(description.table.lower(), description.column.lower())] = description
    return found
