"""Datasets that travel with the trials, for nodes that do not see the driver's data folder.

With ``--data-transport ray`` (the default when ``--storage`` is a URI) the driver reads each
dataset folder of the experiment once, after validating it, and hands the files' bytes to the
trials through Ray's object store (``tune.with_parameters``: stored once, fetched by each node
that runs a trial). A trial writes them into a node-local folder named by their hash (once per
node) and loads the dataset from there with the same readers, so nothing downstream differs from
reading the data folder, and the recorded configuration (``data_dir`` included) stays the
driver's. ``--data-transport folder`` is the old way: every node reads ``--data-dir`` at the same
path (a shared disk, or copies).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

from kdiffe.data import resolve_data_dir
from kdiffe.files import open_regular, write_atomic

from .remote import staging_root
from .store import ExperimentError

TRANSPORTS = ("auto", "folder", "ray")
#: most bytes shipped through the object store; larger datasets belong on a shared disk
MAX_BYTES = 4 << 30

Bundle = Mapping[str, Mapping[str, bytes]]  #: dataset name -> file name -> bytes


def pack(names: Iterable[str], data_dir: str | os.PathLike | None) -> dict[str, dict[str, bytes]]:
    """The regular files of each dataset folder (``synthetic`` needs none)."""
    root = resolve_data_dir(data_dir)
    bundle: dict[str, dict[str, bytes]] = {}
    total = 0
    for name in dict.fromkeys(names):
        if name == "synthetic":
            continue
        folder = root / name
        files = {}
        for path in sorted(folder.iterdir()):  # regular files once symlinks are followed, as the readers take them
            if path.is_file():
                with open_regular(path, ExperimentError) as fh:
                    files[path.name] = fh.read()
        total += sum(len(b) for b in files.values())
        if total > MAX_BYTES:
            raise ExperimentError(f"--data-transport ray: {folder} and the other datasets exceed {MAX_BYTES >> 30} GiB; "
                                  "put the data folder at the same path on every node and use --data-transport folder")
        bundle[name] = files
    return bundle


def digest(bundle: Bundle) -> str:
    h = hashlib.sha256()
    for name in sorted(bundle):
        for file in sorted(bundle[name]):
            h.update(f"{name}/{file}\0{len(bundle[name][file])}\0".encode())
            h.update(bundle[name][file])
    return h.hexdigest()[:16]


def unpack(bundle: Bundle, base: str | os.PathLike | None = None) -> Path:
    """A local data folder holding the bundle's datasets (written once per node and content)."""
    root = (Path(base).expanduser().resolve() if base else staging_root()) / f"data-{digest(bundle)}"
    for name, files in bundle.items():
        for file, data in files.items():
            path = root / name / file
            if not (path.is_file() and path.stat().st_size == len(data)):
                write_atomic(path, data)
    return root
