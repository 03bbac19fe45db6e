"""Shared fixtures: where the real BIRD files are, and whether their absence is fatal.

Tests that need ../shared/bird skip with a reason when it is missing, except where
BIRD_REQUIRED=1 (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from bird.data import BirdSplit, load_split

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bird_root() -> Path:
    # Absolute, so tests that symlink into it or run a command elsewhere still find it.
    configured = os.environ.get("BIRD_ROOT")
    return (Path(configured) if configured else REPO_ROOT.parent / "shared" / "bird").resolve()


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set BIRD_ROOT to the folder holding dev/ and train/)"
    if os.environ.get("BIRD_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


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
    """The train split (6601 questions), loaded once per test session."""
    return load_split(train_dir)


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
        import json

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
