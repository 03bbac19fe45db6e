"""Build the demo dataset's official BIRD layout from its text sources, once per source.

Sources (shipped with the package, under `data/`) mirror the release, except that each
database is text: `schema.sql` (CREATE TABLE statements with their keys) and
`rows/<table>.csv` (a header naming the columns, then one line per row; an empty field is
NULL). `materialize` turns them into

    <root>/train/train.json, train_tables.json
    <root>/train/train_databases/<db>/<db>.sqlite, database_description/*.csv
    <root>/dev/dev.json, dev_gold.sql, dev_tables.json
    <root>/dev/dev_databases/<db>/<db>.sqlite, database_description/*.csv

`<root>` is `<cache>/<key>`, where the key hashes every source file, this builder and the
SQLite library version: an edited source gets a fresh tree, and an unchanged one is built
once. The tree is written into a hidden staging folder beside it and renamed into place, so
a reader never sees a half-built tree, two processes building at once both end with the
one complete tree, and a killed build leaves only a staging folder that a later build
removes. Builds are deterministic (the same SQLite library writes the same bytes), which
matters because the gold and perturbation caches key databases by their content hash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bird.descriptions import read_descriptions
from bird.files import cache_root

if TYPE_CHECKING:
    from sqlite_utils import Database

DATA_DIR = Path(__file__).resolve().parent / "data"
BUILD_FORMAT = 1  # bump when the output changes for unchanged sources
STALE_STAGING_SECONDS = 3600  # a build takes seconds; older staging folders are dead
_STAGING_PREFIX = ".building-"
_PAGE_SIZE = 4096
_SOURCE_ONLY = ("schema.sql", "rows")  # what stays behind: the .sqlite file replaces it


class DemoBuildError(ValueError):
    """A demo source that cannot be built; the message names the file and the fault."""


def default_cache_dir() -> Path:
    """`demo/` under the project's cache root (`bird.files.cache_root`)."""
    return cache_root() / "demo"


def source_key(data_dir: Path = DATA_DIR) -> str:
    """A short hash of what determines the built tree: every source file (path and bytes),
    this module, the build format and the SQLite library that writes the databases."""
    digest = hashlib.sha256()
    digest.update(f"format {BUILD_FORMAT}\nsqlite {sqlite3.sqlite_version}\n".encode())
    digest.update(Path(__file__).read_bytes())
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(data_dir).as_posix()
        digest.update(f"\0{relative}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def materialize(target: Path | None = None) -> Path:
    """The root of the demo dataset in BIRD's official layout, built at first use.

    `target` is the folder that holds builds (default `default_cache_dir()`); the root is
    `target/<source key>`. Safe to call from several processes at once.
    """
    cache = Path(target) if target is not None else default_cache_dir()
    key = source_key()
    root = cache / key
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(cache)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(key), dir=cache))
    try:
        write_tree(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the tree is ordinary data
        try:
            os.rename(staging, root)
        except OSError:
            if not root.is_dir():
                raise
            # Another process renamed its build first; both came from the same sources.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"


def _staging_prefix(key: str) -> str:
    """`.building-<key>-<host>-<pid>-`: enough to tell a dead build from a running one."""
    return f"{_STAGING_PREFIX}{key}-{_host()}-{os.getpid()}-"


def remove_stale_staging(cache: Path) -> list[Path]:
    """Remove staging folders of dead builds: from this host whose process is gone, or
    older than STALE_STAGING_SECONDS. Returns what was removed."""
    removed = []
    host = _host()
    for path in cache.glob(f"{_STAGING_PREFIX}*"):
        parts = path.name[len(_STAGING_PREFIX) :].split("-")
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            continue
        same_host_pid = (
            int(parts[2]) if len(parts) == 4 and parts[1] == host and parts[2].isdigit() else None
        )
        dead = same_host_pid is not None and not _process_alive(same_host_pid)
        if dead or age > STALE_STAGING_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs; True where that cannot be told
    (the signal-0 probe is POSIX only: on Windows os.kill would end the process)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to another user
    return True


# --- the tree ------------------------------------------------------------------------


# Written at the root of a build: how a dataset card tells the demo from BIRD.
DEMO_MARKER = "SQL_RATIONALE_DEMO.txt"
DEMO_ABOUT = (
    "The embedded demo dataset of sql-rationale: databases, questions, evidence and SQL "
    "invented for the project (no BIRD or Spider content), under the project's license, "
    "Apache-2.0.\n"
)


def write_tree(root: Path, data_dir: Path = DATA_DIR) -> None:
    """Write both splits under `root` (which must exist), and the marker that says what
    this data is."""
    for source_split in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        write_split(source_split, root / source_split.name)
    (root / DEMO_MARKER).write_text(DEMO_ABOUT, encoding="utf-8")


def write_split(source: Path, out: Path) -> None:
    """One split: question files copied, databases built, `<split>_tables.json` written."""
    name = source.name
    out.mkdir(parents=True)
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        shutil.copyfile(path, out / path.name)
    databases = source / f"{name}_databases"
    if not databases.is_dir():
        raise DemoBuildError(f"{databases}: missing; a split needs its databases folder")
    tables = []
    for db_source in sorted(p for p in databases.iterdir() if p.is_dir()):
        db_id = db_source.name
        db_out = out / f"{name}_databases" / db_id
        db_out.mkdir(parents=True)
        for item in sorted(db_source.iterdir()):
            if item.name in _SOURCE_ONLY:
                continue
            if item.is_dir():
                shutil.copytree(item, db_out / item.name)
            else:
                shutil.copyfile(item, db_out / item.name)
        db_path = db_out / f"{db_id}.sqlite"
        build_database(db_source, db_path)
        tables.append(tables_json_entry(db_path, db_id, db_out / "database_description"))
    (out / f"{name}_tables.json").write_text(
        json.dumps(tables, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _converter(declared_type: str) -> Callable[[str], Any]:
    """Python type for a CSV field by SQLite's affinity rules (sqlite.org/datatype3.html)."""
    upper = declared_type.upper()
    if "INT" in upper:
        return int
    if any(marker in upper for marker in ("CHAR", "CLOB", "TEXT")):
        return str
    if any(marker in upper for marker in ("REAL", "FLOA", "DOUB")):
        return float
    return str


def _database(connection: sqlite3.Connection) -> Database:
    """sqlite-utils over `connection`, which the caller opened and closes."""
    # Imported here: sqlite-utils imports pandas where that is installed (most of a second),
    # and `bird.data` imports this module for DEMO_MARKER alone. No plugins: their hooks
    # could register functions that change what a build writes.
    from sqlite_utils import Database

    return Database(connection, recursive_triggers=False, execute_plugins=False)


def build_database(source: Path, db_path: Path) -> None:
    """`schema.sql` and `rows/<table>.csv` of `source` into a new SQLite file `db_path`.

    Rows go in file order, one transaction per database. Referential integrity is checked
    once everything is in (so table order does not matter); a violation is an error.
    """
    schema_path, rows_dir = source / "schema.sql", source / "rows"
    if db_path.exists():
        raise DemoBuildError(f"{db_path}: already exists; build into a fresh folder")
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        try:
            # The schema stays SQL text: its keys and constraints are what the demo shows.
            connection.executescript(schema_path.read_text(encoding="utf-8"))
        except sqlite3.Error as error:
            raise DemoBuildError(f"{schema_path}: {error}") from error
        database = _database(connection)
        tables = database.table_names()
        files = {path.stem: path for path in rows_dir.glob("*.csv")}
        if set(files) != set(tables):
            raise DemoBuildError(
                f"{rows_dir}: row files {sorted(files)} do not match the tables of "
                f"{schema_path.name} {sorted(tables)}"
            )
        with database.atomic():
            for table in tables:
                _insert_rows(database, table, files[table])
        # No sqlite-utils call for this check: it runs only inside table.transform().
        violations = connection.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            table, rowid, parent, _ = violations[0]
            raise DemoBuildError(
                f"{files[table]}: row {rowid} references a missing {parent} "
                f"({len(violations)} violation(s) in {source.name})"
            )
    finally:
        connection.close()


def _insert_rows(database: Database, table: str, path: Path) -> None:
    declared = database.table(table).columns
    columns = [column.name for column in declared]
    converters = [_converter(column.type) for column in declared]
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    header = next(reader, None)
    if header != columns:
        raise DemoBuildError(f"{path}:1: header {header!r} is not the columns {columns!r}")
    rows = []
    for line, record in enumerate(reader, start=2):
        if len(record) != len(columns):
            raise DemoBuildError(f"{path}:{line}: {len(record)} fields, {len(columns)} columns")
        try:
            rows.append(
                tuple(
                    None if field == "" else convert(field)
                    for field, convert in zip(record, converters, strict=True)
                )
            )
        except ValueError as error:
            raise DemoBuildError(f"{path}:{line}: {error}") from error
    # List form: the first item names the columns, the rest are rows, inserted in file order.
    database.table(table).insert_all([columns, *rows])


def tables_json_entry(db_path: Path, db_id: str, description_dir: Path) -> dict[str, Any]:
    """The Spider-style schema of one database, as `<split>_tables.json` holds it: readable
    names from the description files where they give one, else the original name with
    underscores as spaces, lower-cased."""
    descriptions = read_descriptions(description_dir)
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        database = _database(connection)
        tables = database.table_names()
        original: list[list[Any]] = [[-1, "*"]]
        readable: list[list[Any]] = [[-1, "*"]]
        types = ["text"]
        primary_keys: list[Any] = []
        index: dict[tuple[str, str], int] = {}
        for table_index, table in enumerate(tables):
            for column in database.table(table).columns:
                index[(table, column.name)] = len(original)
                original.append([table_index, column.name])
                described = descriptions.get((table.lower(), column.name.lower()))
                label = described.readable_name if described and described.readable_name else ""
                readable.append([table_index, label or column.name.replace("_", " ").lower()])
                types.append(column.type.lower() or "text")
            if not database.table(table).use_rowid:  # else pks names `rowid`, no column
                key = [index[(table, name)] for name in database.table(table).pks]
                primary_keys.append(key[0] if len(key) == 1 else key)
        foreign_keys = [
            [index[(table, column)], index[(key.other_table, parent_column)]]
            for table in tables
            for key in database.table(table).foreign_keys
            for column, parent_column in zip(key.columns, key.other_columns, strict=True)
        ]
    finally:
        connection.close()
    return {
        "db_id": db_id,
        "table_names_original": tables,
        "table_names": [table.replace("_", " ").lower() for table in tables],
        "column_names_original": original,
        "column_names": readable,
        "column_types": types,
        "primary_keys": primary_keys,
        "foreign_keys": foreign_keys,
    }
