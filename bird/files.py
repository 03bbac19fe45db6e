"""Where the project's caches live, and writes that a kill can never leave half done.

One environment variable moves every cache (gold results, model responses, prepared
models, the demo dataset): `$SQL_RATIONALE_CACHE`, else `$XDG_CACHE_HOME/sql-rationale`,
else `~/.cache/sql-rationale`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_DIR_ENV = "SQL_RATIONALE_CACHE"


def cache_root() -> Path:
    """The folder every cache of the project lives under (see the module docstring)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sql-rationale"


def _file_mode() -> int:
    """The mode an ordinary new file gets under the user's umask (mkstemp makes 0600)."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path` and rename it into place: a kill leaves the
    old content or the new, never half, and a concurrent reader never sees a partial file.
    The file gets the mode any new file of the user's would get."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp_name, _file_mode())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
