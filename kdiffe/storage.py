"""Folders at a storage URI: any file system ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``hdfs://``).

:class:`Remote` reads and writes whole objects below a URI: an object store publishes an upload
only when it is complete, and on a file system a record goes to a temporary name renamed into
place, so a reader never sees part of one. :func:`pull_results` copies the tidy results of every
experiment stored at a URI into a local mirror, for readers such as ``plots/figures.py``. The
experiment layer on top (trial records, checkpoints and their commit marker, the driver's mirror)
is ``tune/remote.py``. Credentials come from the environment, where pyarrow looks for them; a URI
carrying them is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .errors import UserError
from .files import write_atomic


class StorageError(UserError):
    """A storage URI that cannot be opened, read or written (reported as ``error: ...``)."""


#: pyarrow file systems whose uploads appear whole or not at all (no rename needed)
OBJECT_STORES = ("S3FileSystem", "GcsFileSystem", "AzureFileSystem")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def is_uri(text: str) -> bool:
    """A storage URI other than a local path or ``file://``."""
    found = _SCHEME.match(str(text))
    return bool(found) and found.group(1).lower() != "file"


def _join(*parts: str) -> str:
    """'/'-joined, empty parts dropped; a leading '/' of the first part (an absolute root) kept."""
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return f"/{joined}" if parts and parts[0].startswith("/") else joined


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240] or type(exc).__name__


class Remote:
    """A folder of a pyarrow file system, named by a URI; paths below it are '/'-separated."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs as pafs

        parsed = urlparse(uri)
        if parsed.username or parsed.password:
            raise StorageError(f"--storage {parsed.scheme}://...@{parsed.hostname or ''}{parsed.path}: credentials "
                                  "do not belong in the URI (they would be recorded); give them in the environment "
                                  "(e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        try:
            self.fs, root = pafs.FileSystem.from_uri(uri)
        except (OSError, ValueError, TypeError) as exc:
            raise StorageError(f"--storage {uri}: cannot open it ({_short(exc)})") from None
        self.uri = uri.rstrip("/")
        self.root = root.rstrip("/")
        self._pafs = pafs

    def path(self, rel: str = "") -> str:
        return _join(self.root, rel) if rel else self.root

    def child(self, rel: str) -> "Remote":
        """The sub-folder ``rel`` (its URI keeps this one's query, e.g. an endpoint)."""
        sub = object.__new__(Remote)
        sub.fs, sub._pafs = self.fs, self._pafs
        parsed = urlparse(self.uri)
        sub.uri = parsed._replace(path=f"{parsed.path.rstrip('/')}/{rel}").geturl()
        sub.root = self.path(rel)
        return sub

    # objects ------------------------------------------------------------
    def put(self, rel: str, data: bytes | str) -> None:
        """One object, replaced whole: readers see the old bytes or the new, never a part. An
        object store publishes an upload only once it is complete; on a file system (HDFS, a
        local one) the bytes go to a temporary name first, renamed over the target."""
        data = data.encode() if isinstance(data, str) else data
        target = self.path(rel)
        if type(self.fs).__name__ in OBJECT_STORES:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        head, _, name = target.rpartition("/")
        tmp = f"{head}/.{name}.{os.getpid()}.tmp"
        self.fs.create_dir(head, recursive=True)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, target)

    def get(self, rel: str) -> bytes | None:
        """The object's bytes, None if there is none."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if self.kind(rel) is None:
                return None
            raise StorageError(f"{self.uri}/{rel}: cannot read ({_short(exc)})") from None

    def kind(self, rel: str) -> str | None:
        """"file", "dir" or None (absent)."""
        info = self.fs.get_file_info(self.path(rel))
        return {self._pafs.FileType.File: "file", self._pafs.FileType.Directory: "dir"}.get(info.type)

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except (FileNotFoundError, OSError):
            pass

    def delete_dir(self, rel: str) -> None:
        try:
            self.fs.delete_dir(self.path(rel))
        except (FileNotFoundError, OSError):
            pass

    def files(self, rel: str = "") -> list[str]:
        """Every file below ``rel``, as paths relative to ``rel``, sorted."""
        base = self.path(rel)
        selector = self._pafs.FileSelector(base, recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"{self.uri}/{rel}: cannot list ({_short(exc)})") from None
        return sorted(i.path[len(base) + 1:] for i in infos if i.type == self._pafs.FileType.File)

    def children(self, rel: str = "") -> list[str]:
        """Names directly below ``rel`` (files and folders)."""
        base = self.path(rel)
        selector = self._pafs.FileSelector(base, recursive=False, allow_not_found=True)
        return sorted(i.path[len(base) + 1:] for i in self.fs.get_file_info(selector))

    # folders ------------------------------------------------------------
    def upload(self, local: Path, rel: str) -> list[str]:
        """Every file of the local folder ``local`` to ``rel/``; the names uploaded."""
        names = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
        for name in names:
            self.put(_join(rel, name), (local / name).read_bytes())
        return names

    def download(self, rel: str, local: Path, keep: Callable[[str], bool] = lambda name: True) -> list[str]:
        """Every file below ``rel`` that ``keep`` accepts into the local folder ``local``."""
        names = [n for n in self.files(rel) if keep(n)]
        for name in names:
            data = self.get(_join(rel, name))
            if data is not None:
                write_atomic(local / name, data)
        return names

    def check_writable(self) -> None:
        """Refuse, in one line, storage this process cannot write (no bucket, no credentials)."""
        probe = ".kdiffe-write-test"
        try:
            self.put(probe, b"")
            self.delete(probe)
        except (OSError, StorageError) as exc:
            raise StorageError(f"--storage {self.uri}: cannot write there ({_short(exc)})") from None


def mirror_root(uri: str) -> Path:
    """The local folder mirroring the storage ``uri`` (one per URI)."""
    base = os.environ.get("KDIFFE_MIRROR_DIR") or Path.home() / ".cache" / "kdiffe" / "mirror"
    return Path(base).expanduser().resolve() / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


#: what readers of stored results need of each experiment (plots/figures.py --results URI)
RESULT_FILES = ("results.csv", "best.json", "experiment.json")


def pull_results(uri: str) -> Path:
    """Every experiment's results.csv, best.json and experiment.json under the storage ``uri``, into
    its local mirror (checkpoints and trial records stay in the store); returns the mirror."""
    remote = Remote(uri)
    local = mirror_root(remote.uri)
    names = [n for n in remote.files() if n.rsplit("/", 1)[-1] in RESULT_FILES and "/trials/" not in f"/{n}"]
    if not names:
        raise StorageError(f"--results {remote.uri}: no results.csv there")
    for name in names:
        write_atomic(local / name, remote.get(name) or b"")
    return local
