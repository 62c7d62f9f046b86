"""Experiments on storage without a shared disk: any URI that ``pyarrow.fs`` understands
(the store itself: :mod:`kdiffe.storage`).

``--storage s3://bucket/experiments`` (or ``gs://``, ``hdfs://``, ...: whatever
``pyarrow.fs.FileSystem.from_uri`` opens, as Ray's own ``storage_path`` does) keeps the experiment
folder of :mod:`tune.store` in that store, object for file, with the same guarantees:

* **Trials** work in a local staging folder (:class:`RemoteTrialFiles`) with the code of
  :class:`tune.store.TrialFiles`, and put every record they write into the store as one object.
  An object store replaces an object whole or not at all (a PUT is atomic), so no record is
  ever torn. A checkpoint is several objects, and an object store has no rename: each one goes
  to a fresh prefix ``state-<n>/``, then one small commit marker ``state.json`` names it, and
  only then is the previous prefix deleted. A kill at any moment leaves the marker naming a
  complete checkpoint (or none yet). As before, the checkpoint is written before the rows, which
  are rebuilt from its history, so nothing is lost or repeated. Ray Tune does the same with
  checkpoints on a URI (``StorageContext.persist_current_checkpoint`` in
  ``ray/train/_internal/storage.py``: the local files copied with ``pyarrow.fs.copy_files`` into a
  fresh ``checkpoint_<index>/``, which the experiment state names only afterwards). We keep our
  own records rather than switching to ``tune.report(checkpoint=...)``, because Ray's experiment
  state is pickled and never read back here, and a trial's records must be readable without Ray.
* **The driver** keeps a mirror of the experiment in a local folder (``$KDIFFE_MIRROR_DIR`` or
  ``~/.cache/kdiffe/mirror/<hash of the URI>``), pulled from the store before it reads anything
  (checkpoints and Ray's own files are not copied, only each trial's commit marker) and pushed after it writes experiment.json,
  results.csv and best.json. ``--resume`` needs only the URI.
* **S**, the attention matrix, is cached with the experiment (``<experiment>/cache/``): the first
  trial that needs one builds and uploads it, the others download it.

Credentials come from the environment, the way pyarrow reads them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...); a URI
carrying them (``s3://key:secret@bucket``) is refused, so they never reach a record or a log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from kdiffe.files import write_atomic
from kdiffe.storage import Remote, StorageError

from .lock import LOCK_FILE
from .store import RAY_FOLDER, STATE_MARKER, TRIALS, TrialFiles

#: sub-folder of an experiment holding the cached S matrices of its trials
CACHE_FOLDER = "cache"
#: what a driver's mirror keeps of its own when it pulls: the lock it holds, Ray's files of its runs
LOCAL_ONLY = (LOCK_FILE, RAY_FOLDER)


def _driver_keeps(name: str) -> bool:
    """What the driver mirrors of an experiment: every record and each trial's checkpoint marker (so
    that it knows which cut trials continue), no checkpoint, no Ray file, no cache."""
    parts = name.split("/")
    if parts[0] in (RAY_FOLDER, CACHE_FOLDER):
        return False
    return not (parts[0] == TRIALS and len(parts) > 2 and parts[2].startswith("state") and parts[2] != STATE_MARKER)


class Mirror:
    """The driver's local copy of one experiment stored at a URI."""

    def __init__(self, store: Remote, name: str, local: Path) -> None:
        self.store, self.name, self.local = store, name, local
        self.remote = store.child(name)

    @property
    def uri(self) -> str:
        return self.remote.uri

    def pull(self) -> None:
        """Replace the local copy with the store's records; the driver's own lock and Ray's
        files of this machine stay."""
        self.local.mkdir(parents=True, exist_ok=True)
        for child in self.local.iterdir():
            if child.name in LOCAL_ONLY:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        self.remote.download("", self.local, _driver_keeps)

    def push(self, *names: str) -> None:
        """The local files ``names`` (relative to the experiment) to the store."""
        for name in names:
            path = self.local / name
            if path.is_file():
                self.remote.put(name, path.read_bytes())


# ------------------------------------------------------------------------------- trials
def staging_root() -> Path:
    """This node's local folder for trials' working copies and shipped data ($KDIFFE_STAGING_DIR)."""
    base = os.environ.get("KDIFFE_STAGING_DIR") or Path.home() / ".cache" / "kdiffe" / "staging"
    return Path(base).expanduser().resolve()


def staging_folder(uri: str, trial_id: str) -> Path:
    """A trial's local working folder on whatever node runs it."""
    return staging_root() / hashlib.sha256(uri.encode()).hexdigest()[:16] / trial_id


class RemoteTrialFiles(TrialFiles):
    """:class:`tune.store.TrialFiles` in a local staging folder, every record put into the store
    as it is written (see the module docstring for the checkpoint's commit marker)."""

    def __init__(self, experiment_uri: str, trial_id: str) -> None:
        self.remote = Remote(experiment_uri).child(f"{TRIALS}/{trial_id}")
        self.staging = staging_folder(experiment_uri, trial_id)
        super().__init__(self.staging, trial_id)

    def _put(self, path: Path) -> None:
        self.remote.put(path.name, path.read_bytes())

    def begin(self, node: str, identity: Mapping[str, Any], values: Mapping[str, Any] | None = None,
              data: str = "") -> None:
        """Fetch the trial's records and committed checkpoint from the store, then begin as locally."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in (self.rows, self.end, self.record):
            stored = self.remote.get(path.name)
            if stored is not None:
                write_atomic(path, stored)
        marker = self.remote.get(STATE_MARKER)
        if marker is not None:
            prefix = json.loads(marker)["folder"]
            self.remote.download(prefix, self.state)
        super().begin(node, identity, values, data)
        self.remote.delete(self.error.name)
        for path in (self.record, self.identity, self.worker):
            self._put(path)

    def ended(self, outcome: str, epoch: Any) -> None:
        super().ended(outcome, epoch)
        self._put(self.end)

    def save_state(self, save: Any) -> None:
        """Save locally, upload to a fresh prefix, commit it with the marker, drop the old prefix."""
        super().save_state(save)
        older = [n for n in self.remote.children() if n.startswith("state-")]  # the previous one, any never committed
        prefix = f"state-{1 + max((int(n[6:]) for n in older if n[6:].isdigit()), default=0)}"
        files = self.remote.upload(self.state, prefix)
        self.remote.put(STATE_MARKER, json.dumps({"folder": prefix, "files": files}))
        for name in older:
            self.remote.delete_dir(name)

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        super().write_rows(rows)
        self._put(self.rows)

    def fail(self, message: str) -> None:
        super().fail(message)
        try:
            self._put(self.error)
        except (OSError, StorageError):
            pass

    def close(self) -> None:
        """Drop the staging folder: everything of the trial is in the store."""
        shutil.rmtree(self.staging, ignore_errors=True)


def trial_files(trial_config: Mapping[str, Any], trial_id: str) -> TrialFiles:
    """The records of one trial: in the store when the experiment lives at a URI, else on disk."""
    uri = trial_config.get("results_uri")
    if uri:
        return RemoteTrialFiles(uri, trial_id)
    return TrialFiles(Path(trial_config["results_dir"]), trial_id)


# ------------------------------------------------------------------------------- S cache
class SharedCache:
    """A trial's S cache: a local folder kept in step with the experiment's ``cache/`` in the store."""

    def __init__(self, experiment_uri: str, local: Path) -> None:
        self.remote = Remote(experiment_uri).child(CACHE_FOLDER)
        self.local = local

    def fetch(self) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        have = {p.name for p in self.local.iterdir()}
        self.remote.download("", self.local, lambda name: "/" not in name and name not in have)

    def share(self) -> None:
        there = set(self.remote.files())
        for path in sorted(self.local.glob("S_*.npz")):
            if path.name not in there:
                self.remote.put(path.name, path.read_bytes())
