"""Which files make a split, in each release layout users download.

    BIRD       <dir>/<name>.json, <name>_databases/<db>/<db>.sqlite, <name>_tables.json
    mini-dev   <dir>/mini_dev_sqlite.json (also _mysql, _postgresql), dev_databases/,
               dev_tables.json, mini_dev_sqlite_gold.sql
    Spider     <dir>/dev.json (train_spider.json, test.json ...), tables.json,
               database/<db>/<db>.sqlite (test.json: test_tables.json, test_database/)

A split is named by its questions file. `find_layout` takes the folder (the usual split is
chosen) or the questions file itself (any split of the folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Benchmark = Literal["bird", "spider"]

MINI_DEV_NAME = re.compile(r"^mini_dev_(sqlite|mysql|postgresql)$")
MINI_DEV_DATABASES = "dev_databases"
MINI_DEV_TABLES = "dev_tables.json"
MINI_DEV_NOTE = (
    "mini-dev: scoring the SQLite version ({name}.json) on SQLite; the MySQL and PostgreSQL "
    "versions of mini-dev are not executed here"
)
SPIDER_TABLES = "tables.json"
SPIDER_DATABASES = "database"
SPIDER_DEFAULT_SPLIT = "dev"


class LayoutError(ValueError):
    """No split, or more than one, where one was expected; the message says what to pass."""


@dataclass(frozen=True)
class SplitLayout:
    """Where a split's questions, databases and schemas are."""

    name: str
    root: Path
    databases_dirname: str
    tables_filename: str | None
    benchmark: Benchmark
    notes: tuple[str, ...] = ()

    @property
    def questions_path(self) -> Path:
        return self.root / f"{self.name}.json"


def default_databases_dirname(name: str) -> str:
    """The databases folder of a BIRD or mini-dev split called `name`."""
    return MINI_DEV_DATABASES if MINI_DEV_NAME.match(name) else f"{name}_databases"


def _bird_layout(root: Path, name: str) -> SplitLayout | None:
    if (root / f"{name}_databases").is_dir() or (root / f"{name}_tables.json").is_file():
        return SplitLayout(name, root, f"{name}_databases", f"{name}_tables.json", "bird")
    return None


def _mini_dev_layout(root: Path, name: str) -> SplitLayout | None:
    match = MINI_DEV_NAME.match(name)
    if match is None or not (root / MINI_DEV_DATABASES).is_dir():
        return None
    if match.group(1) != "sqlite":
        raise LayoutError(
            f"{root / (name + '.json')}: the {match.group(1)} version of mini-dev is not "
            f"executed here (SQLite only); pass mini_dev_sqlite.json or its folder"
        )
    note = MINI_DEV_NOTE.format(name=name)
    return SplitLayout(name, root, MINI_DEV_DATABASES, MINI_DEV_TABLES, "bird", (note,))


def _spider_layout(root: Path, name: str) -> SplitLayout | None:
    if name == "test" and (root / "test_database").is_dir():
        return SplitLayout(name, root, "test_database", "test_tables.json", "spider")
    if (root / SPIDER_DATABASES).is_dir() and (root / SPIDER_TABLES).is_file():
        return SplitLayout(name, root, SPIDER_DATABASES, SPIDER_TABLES, "spider")
    return None


def _layout_of(root: Path, name: str) -> SplitLayout | None:
    if name.endswith("_tables") or name == "tables":
        return None
    return _bird_layout(root, name) or _mini_dev_layout(root, name) or _spider_layout(root, name)


def find_layout(path: Path) -> SplitLayout:
    """The split at `path`: a split folder, or a split's questions file (<name>.json)."""
    if path.is_file():
        layout = _layout_of(path.parent, path.stem) if path.suffix == ".json" else None
        if layout is None:
            raise LayoutError(
                f"{path}: not the questions file of a split; expected <name>.json next to "
                f"<name>_databases/ (BIRD), dev_databases/ (mini-dev) or database/ and "
                f"tables.json (Spider)"
            )
        return layout
    if not path.is_dir():
        raise LayoutError(f"{path}: not a directory; pass the folder holding <split>.json")
    layouts = [
        layout
        for candidate in sorted(path.glob("*.json"))
        if (layout := _layout_of_candidate(path, candidate.stem)) is not None
    ]
    return _choose(path, layouts)


def _layout_of_candidate(root: Path, name: str) -> SplitLayout | None:
    """As `_layout_of`, but a folder scan skips mini-dev's other dialects quietly."""
    match = MINI_DEV_NAME.match(name)
    if match is not None and match.group(1) != "sqlite":
        return None
    return _layout_of(root, name)


def _choose(path: Path, layouts: list[SplitLayout]) -> SplitLayout:
    """One split of a folder: the one named as the folder, Spider's dev, or the only one."""
    bird = [layout for layout in layouts if layout.benchmark == "bird"]
    if bird:
        layouts = bird  # a Spider-like tables.json beside a BIRD split does not make a second
    for layout in layouts:
        if layout.name == path.name:
            return layout
    if layouts and all(layout.benchmark == "spider" for layout in layouts):
        named = [layout for layout in layouts if layout.name == SPIDER_DEFAULT_SPLIT]
        if named:
            return named[0]
    if len(layouts) == 1:
        return layouts[0]
    if not layouts:
        dialects = sorted(p.name for p in path.glob("mini_dev_*.json"))
        if dialects:
            raise LayoutError(
                f"{path}: only {', '.join(dialects)} found; the MySQL and PostgreSQL versions "
                f"of mini-dev are not executed here (SQLite only): add mini_dev_sqlite.json"
            )
        raise LayoutError(
            f"{path}: no BIRD split found; expected <name>.json next to <name>_databases/ "
            f"(for example dev.json and dev_databases/), the mini-dev release "
            f"(mini_dev_sqlite.json and dev_databases/) or Spider (dev.json, tables.json and "
            f"database/)"
        )
    names = ", ".join(f"{layout.name}.json" for layout in layouts)
    raise LayoutError(
        f"{path}: several splits found ({names}); pass the questions file (for example "
        f"{path / layouts[0].questions_path.name}) or a folder that holds one"
    )
