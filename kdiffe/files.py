"""Files written whole, and files read only when they are regular files.

Writing: a reader, a crash or a full disk sees the old file or the new one, never a torn or
empty one. Every writer of experiment records (``tune.store``) and of rendered tables, claims
and figures (``plots/``) goes through :func:`write_atomic` / :func:`replace_atomic`.

Reading untrusted input (dataset files, results files): :func:`open_regular` opens only a
regular file, so a FIFO, a device such as /dev/zero or a folder in a file's place is refused at
once instead of hanging or filling memory.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is ("a FIFO", "a directory", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "another kind of file")


def open_regular(path: str | os.PathLike, error: Callable[[str], Exception]) -> BinaryIO:
    """``path`` opened for binary reading; ``error("<path>: not a regular file (<kind>)")`` is
    raised unless it is a regular file once symlinks are followed. Opened non-blocking (a FIFO
    never waits for a writer) and checked on the descriptor, so nothing swapped in between a
    check and the open gets through. An OSError of the open itself propagates."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise error(f"{path}: not a regular file ({kind})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_json(path: str | os.PathLike, error: Callable[[str], Exception], missing: str | None = None) -> Any:
    """The JSON value in the regular file ``path``. A missing file raises ``error(missing)`` when
    ``missing`` is given (``error("<path>: missing")`` otherwise); any other failure, a file that is
    not regular or not JSON, raises ``error("<path>: unreadable (<why>)")``."""
    try:
        fh = open_regular(path, error)
    except FileNotFoundError:
        raise error(missing or f"{path}: missing") from None
    except OSError as exc:
        raise error(_unreadable(path, exc)) from None
    with fh:
        try:
            return json.loads(fh.read())
        except (OSError, ValueError) as exc:
            raise error(_unreadable(path, exc)) from None


def _unreadable(path: str | os.PathLike, exc: Exception) -> str:
    return f"{path}: unreadable ({' '.join(str(exc).split())[:160]})"


def replace_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a temporary file beside ``path`` (same suffix), flushed to disk, then
    renamed over ``path``; on any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write ``text`` (or bytes) to ``path`` whole (see :func:`replace_atomic`)."""
    def write(tmp: Path) -> None:
        with (open(tmp, "wb") if isinstance(text, bytes) else open(tmp, "w", newline="")) as fh:
            fh.write(text)
    return replace_atomic(path, write)


def save_npy(path: str | os.PathLike, array: Any) -> Path:
    """Write ``array`` to ``path`` as one .npy array, whole (see :func:`replace_atomic`), never pickled."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return replace_atomic(path, write)
