"""The experiment folder on disk: its settings, trial-owned results, results.csv and best.json.

    <storage>/<name>/
        experiment.json        the resolved command (options, --set values, resources) that
                               --resume reuses, plus commit, machine and every run's wall time
        .lock                  names the one driver running the experiment (tune.lock)
        trials/<key>/          owned by that trial alone; <key> is its trial key (tune.keys):
            trial.json         its key and the values that make it this trial (grid point, seed,
                               searched parameters)
            state/             the trainer checkpoint of its last evaluation (weights_only loadable)
            rows.csv           its evaluations, one tidy row each (schema kdiffe.results)
            end.json           how it ended on its own rules: finished (epochs or patience) or
                               stopped (by the scheduler); absent while it is partial
            error.txt          why it failed, when it did (removed when it runs again)
            worker.json        node and process that run it
            row.json           its identity and configuration (the template of an error row)
        results.csv            every trial's rows plus one row per failed trial, assembled here
        best.json              the best validation evaluation of the trials that ended (test
                               metrics read at it)
        ray/run-<n>/           Ray Tune's own files of the n-th run (logs only: never read back)

These records are the whole truth about an experiment: ``--resume`` rebuilds the remaining work
from them (:func:`read_trials`), never from Ray's state files, so a torn or planted Ray state can
neither repeat a trial nor run code. A trial writes its checkpoint first and its rows second, each
atomically (temporary file, then ``os.replace``), so a kill or a full disk at any moment leaves
complete files; the checkpoint's history is the source of truth and the rows are rewritten from
it. ``results.csv`` is rebuilt from the trial folders, never appended to, so a killed driver can
neither lose nor repeat a row.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from kdiffe.errors import UserError
from kdiffe.files import read_json, write_atomic  # noqa: F401  (write_atomic re-exported: tune's one atomic writer)
from kdiffe.results import (BEST_FILE, COLUMNS, RECORD_FILE, RESULTS_FILE, TEXT_DTYPES, best_evaluation, last_run,
                            with_config_defaults)
TRIALS = "trials"
RAY_FOLDER = "ray"  #: Ray Tune's own files, one folder per run; never read back

#: How a trial stands in its records: ended on its own rules (finished: its epochs or patience;
#: stopped: by the scheduler), failed (retried on resume), partial (cut short; continued on resume).
FINISHED, STOPPED, FAILED, PARTIAL = "finished", "stopped", "failed", "partial"
ENDED = (FINISHED, STOPPED)


class ExperimentError(UserError):
    """A problem with the experiment folder or its command line (reported as ``error: ...``)."""


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _nearly_full(folder: Path, margin: int = 4 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def experiment_path(storage: Path, name: str) -> Path:
    """``storage / name``, refused unless it stays inside ``storage`` (``x/y`` is allowed;
    absolute names, ``..`` and empty parts are not)."""
    parts = str(name).replace("\\", "/").split("/")
    if not name or os.path.isabs(name) or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise ExperimentError(f"--name {name!r}: must be a relative folder name inside --storage "
                              "(letters, digits, '-', '_', '.', and '/' between parts; no '..')")
    path = storage / name
    try:
        inside = path.resolve().is_relative_to(storage.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise ExperimentError(f"--name {name}: {path} leads outside --storage {storage}")
    return path


# ------------------------------------------------------------------------------------- files
def write_frame(frame: Any, path: Path) -> None:
    write_atomic(path, frame.to_csv(index=False))


def read_frame(path: Path) -> Any:
    """A results CSV with the current columns; a missing or empty file is a frame without rows.

    A file written before a column existed gets that column: a Config column with the field's
    default (the value its runs used), any other empty.
    """
    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(COLUMNS))
    try:
        frame = pd.read_csv(path, dtype=TEXT_DTYPES)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(COLUMNS))
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{path}: not a readable CSV ({exc})") from None
    return with_config_defaults(frame).reindex(columns=list(COLUMNS))


def storage_path(text: str) -> Path:
    """A local --storage as an absolute folder: a path, or a ``file://`` URI (other URIs are
    :mod:`tune.remote`'s)."""
    from urllib.parse import unquote, urlparse

    if text.lower().startswith("file://"):
        text = unquote(urlparse(text).path)
    return Path(text).expanduser().resolve()


def check_storage(storage: Path) -> None:
    """Refuse a storage folder that cannot hold experiments, before Ray starts."""
    if storage.exists() and not storage.is_dir():
        raise ExperimentError(f"--storage {storage}: is a file, not a folder")
    try:
        storage.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=storage, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ExperimentError(f"--storage {storage}: cannot write there ({exc.strerror or exc})") from None


# ------------------------------------------------------------------------------------ record
def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                          cwd=Path(__file__).resolve().parent)


def _commit() -> tuple[str, str]:
    """The checkout's short commit, with "+changes" when tracked files differ from it, and that
    difference (``git diff HEAD``; '' when clean or not a checkout)."""
    try:
        out = _git("rev-parse", "--short", "HEAD")
        if out.returncode != 0:
            return "", ""
        diff = _git("diff", "HEAD", "--binary").stdout
        return out.stdout.strip() + ("+changes" if diff.strip() else ""), diff
    except (OSError, subprocess.SubprocessError):
        return "", ""


def gpu_cards() -> list[str]:
    """The names of the machine's CUDA cards as ``nvidia-smi`` lists them (none without it); asked of
    nvidia-smi so that the driver process never opens a CUDA context."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def machine() -> str:
    """The host, its CPUs and its GPUs ("1 x NVIDIA H100 80GB HBM3"), as every run records them."""
    cards = gpu_cards()
    counted = ", ".join(f"{cards.count(name)} x {name}" for name in dict.fromkeys(cards))
    return f"{socket.gethostname()}, {os.cpu_count()} CPUs" + (f", GPUs: {counted}" if cards else "")


def experiment_state(path: Path) -> str:
    """"new" (no experiment.json), "done" (its last run exited 0) or "resume" (anything else)."""
    record = path / RECORD_FILE
    if not record.exists():
        return "new"
    run = last_run(read_json(record, UserError))
    return "done" if run and run.get("exit") == 0 else "resume"


def load_record(path: Path) -> dict[str, Any]:
    file = path / RECORD_FILE
    record = read_json(file, ExperimentError, f"--resume: {path} holds no {RECORD_FILE}; it was not started by this tool")
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ExperimentError(f"{file}: no settings recorded")
    return record


def start_record(path: Path, script: str, command: list[str], settings: Mapping[str, Any],
                 record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create (or, on resume, extend) experiment.json with this run; returns the record."""
    record = dict(record or {"script": script, "settings": dict(settings), "created": _now()})
    runs = record.setdefault("runs", [])
    commit, diff = _commit()
    run = {"command": command, "commit": commit, "machine": machine(), "started": _now(), "ended": None,
           "wall_seconds": None, "exit": None}
    if diff:  # uncommitted changes: the run records them, so the code that ran can be rebuilt
        run["patch"] = f"changes-run{len(runs) + 1}.patch"
        write_atomic(path / run["patch"], diff)
    runs.append(run)
    write_atomic(path / RECORD_FILE, json.dumps(record, indent=2, default=str))
    return record


def end_record(path: Path, record: dict[str, Any], code: int, seconds: float) -> OSError | None:
    """Close this run in experiment.json. When it cannot be written (a full disk) the old record
    stays whole (that run then shows no end) and the error comes back instead of being raised."""
    record["runs"][-1].update(ended=_now(), wall_seconds=round(seconds, 1), exit=code)
    try:
        write_atomic(path / RECORD_FILE, json.dumps(record, indent=2, default=str))
    except OSError as exc:
        return exc
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------------ trial folders
#: a trial's commit marker on remote storage: which ``state-<n>/`` prefix holds its checkpoint (tune.remote)
STATE_MARKER = "state.json"


class TrialFiles:
    """The folder one trial owns: checkpoint, rows, error, worker."""

    def __init__(self, experiment: Path, trial_id: str) -> None:
        self.trial_id = trial_id
        self.folder = experiment / TRIALS / trial_id
        self.state = self.folder / "state"
        self.rows = self.folder / "rows.csv"
        self.error = self.folder / "error.txt"
        self.worker = self.folder / "worker.json"
        self.identity = self.folder / "row.json"
        self.record = self.folder / "trial.json"
        self.end = self.folder / "end.json"

    def begin(self, node: str, identity: Mapping[str, Any], values: Mapping[str, Any] | None = None,
              data: str = "") -> None:
        """Mark the trial as running here (an earlier failure is forgotten); ``identity`` is its
        row without metrics, the template of an error row should it fail before any evaluation;
        ``values`` what makes it this trial (trial.json); ``data`` where its dataset is read from
        (worker.json)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.error.unlink(missing_ok=True)
        write_atomic(self.record, json.dumps({"key": self.trial_id, "values": dict(values or {})}, default=str))
        write_atomic(self.identity, json.dumps(dict(identity), default=str))
        write_atomic(self.worker, json.dumps({"node": node, "pid": os.getpid(), "host": socket.gethostname(),
                                              "data": data}))

    def ended(self, outcome: str, epoch: Any) -> None:
        """Record that the trial ended on its own rules (``finished``) or the scheduler's (``stopped``)."""
        write_atomic(self.end, json.dumps({"outcome": outcome, "epoch": epoch, "at": _now()}, default=str))

    def state_folder(self) -> Path | None:
        """The last complete checkpoint folder, if any (``state.old`` when a swap was cut short)."""
        for folder in (self.state, self.state.with_name("state.old")):
            if folder.is_dir() and any(folder.iterdir()):
                return folder
        return None

    def save_state(self, save: Any) -> None:
        """``save(folder)`` into a fresh folder, then swap it in for the previous checkpoint."""
        new, old = self.state.with_name("state.new"), self.state.with_name("state.old")
        shutil.rmtree(new, ignore_errors=True)
        try:
            save(new)
        except BaseException as exc:
            shutil.rmtree(new, ignore_errors=True)  # a half-written checkpoint (a full disk) never lingers
            if isinstance(exc, Exception) and not disk_full(exc) and _nearly_full(self.folder):
                # torch reports a full disk as a RuntimeError of its zip writer
                raise OSError(errno.ENOSPC, f"No space left on device for the checkpoint ({error_text(str(exc))})",
                              str(new)) from exc
            raise
        if self.state.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.state, old)
        os.replace(new, self.state)
        shutil.rmtree(old, ignore_errors=True)

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        import pandas as pd

        write_frame(pd.DataFrame(list(rows), columns=list(COLUMNS)), self.rows)

    def close(self) -> None:
        """The trial's process is done with its folder (nothing to do on disk)."""

    def fail(self, message: str) -> None:
        """Record why the trial failed; where even that cannot be written (a full disk), the
        trial stays partial in its records, which resume treats the same way: it runs again."""
        try:
            write_atomic(self.error, message.strip() + "\n")
        except OSError:
            pass


@dataclass
class TrialRecord:
    """What one trial folder says about its trial."""

    key: str
    outcome: str  #: FINISHED, STOPPED, FAILED or PARTIAL
    values: dict[str, Any] = field(default_factory=dict)  #: trial.json's values
    rows: Any = None  #: its rows.csv (kdiffe.results schema)
    keyed: bool = True  #: it has a trial.json (folders of versions before trial keys have none)
    checkpointed: bool = False  #: a checkpoint is kept (here, or on remote storage its commit marker)

    @property
    def ended(self) -> bool:
        return self.outcome in ENDED


def _json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, not a regular file or not JSON."""
    try:
        return read_json(path, UserError)
    except UserError:
        return None


def read_trials(experiment: Path) -> dict[str, TrialRecord]:
    """Every trial folder's record, by trial key: how it stands, its values and its rows."""
    records = {}
    for key in trial_ids(experiment):
        files = TrialFiles(experiment, key)
        end, record = _json(files.end), _json(files.record)
        if isinstance(end, dict) and end.get("outcome") in ENDED:
            outcome = end["outcome"]
        else:
            outcome = FAILED if files.error.exists() else PARTIAL
        keyed = isinstance(record, dict)
        values = record.get("values") if keyed and isinstance(record.get("values"), dict) else {}
        checkpointed = files.state_folder() is not None or (files.folder / STATE_MARKER).is_file()
        records[key] = TrialRecord(key=key, outcome=outcome, values=values, rows=read_frame(files.rows), keyed=keyed,
                                   checkpointed=checkpointed)
    return records


def trial_ids(experiment: Path) -> list[str]:
    folder = experiment / TRIALS
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def error_text(text: str) -> str:
    """The last line of an error (the exception and its message), at most 500 characters."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "trial failed (see Ray's error.txt of the trial)"


def assemble(experiment: Path, errors: Mapping[str, str] | None = None,
             records: Mapping[str, TrialRecord] | None = None) -> Any:
    """results.csv from the trial folders: every trial's rows, and an error row per failed trial.

    Rows of a trial that ended on its own rules have status ``ok``; those of a trial cut short or
    failed, ``partial`` (no table, figure or best.json counts them). ``errors`` adds failures the
    trials could not write themselves (a killed worker): trial key -> error text. ``records``:
    the folders as :func:`read_trials` just read them (read here when not given). Written
    atomically; returns the frame.
    """
    import pandas as pd

    errors = dict(errors or {})
    records = read_trials(experiment) if records is None else records
    frames, failed = [], []
    for trial_id in sorted(set(records) | set(errors)):
        files = TrialFiles(experiment, trial_id)
        record = records.get(trial_id)
        rows = record.rows if record is not None else read_frame(files.rows)
        if len(rows):
            rows = rows.copy()
            rows["status"] = "ok" if record is not None and record.ended else PARTIAL
            frames.append(rows)
        text = files.error.read_text(errors="replace") if files.error.exists() else errors.get(trial_id)
        if text is not None:
            failed.append(_error_row(rows.iloc[-1].to_dict() if len(rows) else _identity(files), trial_id, text))
    frame = pd.concat([*frames, pd.DataFrame(failed, columns=list(COLUMNS))], ignore_index=True) \
        if frames or failed else pd.DataFrame(columns=list(COLUMNS))
    frame = frame.reindex(columns=list(COLUMNS))
    write_frame(frame, experiment / RESULTS_FILE)
    return frame


def _identity(files: TrialFiles) -> dict[str, Any]:
    identity = _json(files.identity)
    return identity if isinstance(identity, dict) else {"trial_id": files.trial_id}


def _error_row(template: Mapping[str, Any], trial_id: str, text: str) -> dict[str, Any]:
    from kdiffe.results import METRIC_COLUMNS, TIME_COLUMNS

    row = {k: v for k, v in template.items() if k not in METRIC_COLUMNS + TIME_COLUMNS or k in ("n_users", "n_items")}
    row.update(trial_id=trial_id, status="error", error=error_text(text))
    return row


def write_best(frame: Any, path: Path, experiment: str, kind: str, metric: str) -> dict[str, Any] | None:
    """best.json: the metric, the best evaluation (config, validation and test metrics), trial counts."""
    best = best_evaluation(frame, metric)
    trials = frame.drop_duplicates("trial_id", keep="last")
    payload = {"experiment": experiment, "kind": kind, "metric": metric,
               "selection": "best validation evaluation; test metrics read at that evaluation",
               "trials": int(len(trials)), "failed_trials": int((trials["status"] == "error").sum()),
               "partial_trials": int((trials["status"] == "partial").sum()),
               "counted": "trials that ended on their own rules (finished, or stopped by the scheduler)",
               "best": best}
    write_atomic(path / BEST_FILE, json.dumps(payload, indent=2, default=str))
    return best
