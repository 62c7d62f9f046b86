"""What ran: every run of every stored experiment (a first start and each resume), from the
``experiment.json`` each experiment folder keeps (:data:`kdiffe.results.RECORD_FILE`).

One row per run: the experiment (part), the run's number, when it started, its wall time and exit
status, the commit it ran at ("+changes" when tracked files differed from it) and the patch of
those changes that the runner saved beside the record (runs started before patches were saved
have none: "not recorded"). Rendered as ``what_ran.md`` / ``what_ran.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdiffe.errors import UserError
from kdiffe.files import read_json
from kdiffe.results import RECORD_FILE
from plots import tables

COLUMNS = ("part", "run", "started", "wall minutes", "exit", "commit", "changes")


def records(root: Path) -> list[tuple[str, dict]]:
    """(experiment folder name, record) for every readable experiment.json under ``root``."""
    found = []
    for path in sorted(Path(root).rglob(RECORD_FILE)):
        try:
            record = read_json(path, UserError)
        except UserError:
            continue
        if isinstance(record, dict) and isinstance(record.get("runs"), list):
            found.append((path.parent.name, record))
    return found


def what_ran(root: Path) -> pd.DataFrame:
    """Every run of every experiment under ``root`` (columns :data:`COLUMNS`), in part order."""
    rows = []
    for name, record in records(root):
        for number, run in enumerate(record["runs"], 1):
            if not isinstance(run, dict):
                continue
            commit = str(run.get("commit") or "")
            changes = run.get("patch") or ("not recorded" if commit.endswith("+changes") else "")
            seconds = run.get("wall_seconds")
            rows.append({"part": name, "run": number, "started": str(run.get("started") or "")[:16].replace("T", " "),
                         "wall minutes": round(float(seconds) / 60, 1) if isinstance(seconds, (int, float)) else None,
                         "exit": run.get("exit"), "commit": commit, "changes": changes})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_what_ran(root: Path, out: Path) -> list[Path]:
    table = what_ran(root)
    if table.empty:
        return []
    shown = table.assign(**{"wall minutes": table["wall minutes"].map(lambda m: "" if pd.isna(m) else f"{m:.1f}"),
                            "exit": table["exit"].map(lambda e: "running or killed" if pd.isna(e) else str(int(e)))})
    return list(tables.write_table(table, out, "what_ran", markdown=tables.to_markdown(shown)))
