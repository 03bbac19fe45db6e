"""The page itself: one HTML file holding its style, its script and its records."""

from __future__ import annotations

import html
from importlib import resources

from rationale.browser.model import PageData

ASSETS = resources.files("rationale.browser") / "assets"


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def page_json(data: PageData) -> str:
    """The records as JSON that cannot end the script element holding it: every `<` is
    written `\\u003c` (only strings hold one, and JSON reads the escape back)."""
    return data.model_dump_json(exclude_none=False).replace("<", "\\u003c")


def render_page(data: PageData) -> str:
    """A self-contained page: no file, font or script is fetched when it opens."""
    text = _asset("page.html")
    for marker, value in (
        ("{{TITLE}}", html.escape(data.title)),
        ("{{CSS}}", _asset("page.css")),
        ("{{JS}}", _asset("page.js")),
    ):
        text = text.replace(marker, value)
    return text.replace("{{DATA}}", page_json(data))  # last: the records may hold a marker
