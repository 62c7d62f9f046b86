"""Files written whole: a reader, a crash or a full disk sees the old file or the new one, never
a torn or empty one. Every writer of experiment records (``tune.store``) and of rendered tables,
claims and figures (``plots/``) goes through :func:`write_atomic`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` whole (see :func:`replace_atomic`)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
    return replace_atomic(path, write)
