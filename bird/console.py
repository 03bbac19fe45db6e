"""Consoles for the result tables the commands print."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 160


def table_console(stderr: bool = False) -> Console:
    """A rich console that keeps wide tables whole in logs and pipes.

    Off a terminal rich assumes 80 columns and squeezes a ten-column table into "…" cells;
    there, use a width that fits every table the commands print.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)
