"""Where the project's caches live, writes that a kill can never leave half done, and
places to write that are checked before the work.

`check_output_place` refuses, before any work, a place the user named that cannot be
written; `os_error_line` words any other file-system error as one line.

One environment variable moves every cache (gold results, model responses, prepared
models, the demo dataset): `$SQL_RATIONALE_CACHE`, else `$XDG_CACHE_HOME/sql-rationale`,
else `~/.cache/sql-rationale`.
"""

from __future__ import annotations

import errno
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


# --- places the user asks us to write into -------------------------------------------------


class OutputPlaceError(ValueError):
    """A file or folder the user named for output cannot be written (exit 2). Raised before
    any work, so that a long run never ends in a write that was bound to fail."""


def _nearest_existing(path: Path) -> Path:
    return next(parent for parent in (path, *path.parents) if parent.exists())


def check_output_place(path: Path, what: str, *, folder: bool) -> None:
    """Refuse `path` as an output file (`folder` False) or folder unless one could be made
    there now: every existing part of the path is a folder, and a file can be created in the
    nearest existing one (probed with a temporary file, since `os.access` says yes to root
    even on a read-only file system). Leaves nothing behind."""
    path = Path(path).expanduser().absolute()
    if path.exists():
        if folder and not path.is_dir():
            raise OutputPlaceError(f"{what} {path} is a file: give a folder")
        if not folder and path.is_dir():
            raise OutputPlaceError(f"{what} {path} is a folder: give a file name")
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        raise OutputPlaceError(
            f"{what} {path}: {existing} is a file, not a folder: choose another place"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise OutputPlaceError(
            f"{what} {path}: cannot write in {existing} ({error.strerror}): choose another "
            "place or fix its permissions"
        ) from None
    if path.is_file():
        try:
            with path.open("ab"):  # an existing file is completed: it must open for append
                pass
        except OSError as error:
            raise OutputPlaceError(
                f"{what} {path}: cannot write it ({error.strerror}): choose another file"
            ) from None


_OS_ADVICE = {
    errno.EACCES: "check its permissions or choose another place",
    errno.EPERM: "check its permissions or choose another place",
    errno.EROFS: "the file system is read-only: choose another place",
    errno.ENOSPC: "the disk is full: free space or choose another place",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another place",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file",
}


def os_error_line(error: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, what to do."""
    what = error.strerror or str(error)
    path = error.filename
    if path is None:
        return f"{what}"
    target = f" -> {error.filename2}" if error.filename2 else ""
    advice = _OS_ADVICE.get(error.errno or 0, "check the path and its permissions")
    return f"{path}{target}: {what}: {advice}"
