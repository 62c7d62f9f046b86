"""The paper's Figures 5-10 and Tables II-III, redrawn from stored experiment results.

    python plots/figures.py                                      # reads ./results, writes results/figures/
    python plots/figures.py --results results --out paper --formats png

Reads every ``results.csv`` under ``--results`` (default ``results``, the runners' ``--storage``
default, relative to the current folder; the tidy files that ``tune/search.py``,
``ablations/run.py`` and ``tune/scalability.py`` write; schema: :mod:`kdiffe.results`) and trains
nothing, so figures can be redrawn after every sweep. An experiment whose last run has not ended
(its experiment.json: still running, killed, or interrupted) is left out with a note, so that no
figure, table or claim rests on part of a grid; ``--unfinished`` draws it anyway. What is drawn
where, the paper's grids, numbers and names come from :mod:`kdiffe.paper`; this module depends on
nothing in ``tune/``.

=========  ==================================================================================
Figure 5   effectiveness of denoising: Recall@20 / NDCG@20 against q, KDiffE against the
           unguided variant; a dataset needs both q grids (one alone is left out with a note
           naming the command that runs the other; Figure 9 shows KDiffE's q alone)
Figure 6   M and R          (grid rows: sweep M / R, plus the sweep="default" trials)
Figure 7   xi and t
Figure 8   tau and theta1   (log axis for theta1)
Figure 9   q                (KDiffE)
Figure 10  seconds per epoch (a) against diffusion steps t per dataset, (b) against users
search_*   one per optuna/random search (kind "search"): each successful trial's best
           validation Recall@20 against every parameter the search moved (one panel each; the
           variant as a categorical panel when it moved, colours by variant), best trial starred
Table II   datasets x variants (ablation rows; default grid trials where no ablation ran)
Table III  ablations, mean ± std over seeds with a paired test (via plots/tables.py)
claims     a verdict on every claim (plots/claims.py, rules in plots/verdicts.py)
retrain_*  one per re-training (kind "retrain", tune/search.py --mode retrain and the end of a
           search): the found configuration against the published defaults (plots/retraining.py)
others     comparisons (plots/tables.py), what_ran (plots/provenance.py, every run of every
           experiment under --results), splits (plots/splits.py, from the datasets: --data-dir)
=========  ==================================================================================

Accuracy plotted: test Recall@20 / NDCG@20 at each trial's best *validation* Recall@20
evaluation (never the best test epoch; :func:`kdiffe.results.best_rows`), averaged over the
trials (seeds) at each point; a band shows ±1 standard deviation where a point has several.
Seconds per epoch: each trial's last evaluation (the mean over its epochs), on an axis from 0.
Dotted grey lines mark each parameter's default value (that of the experiment's sweep="default"
trials, else the paper's).

Replicates: trials are pooled into one mean ± std point only when their whole configuration is
equal (every :data:`kdiffe.results.CONFIG_COLUMNS` value, epochs included) apart from the seed and
the plotted parameter. Trials whose configurations differ in anything else (say, two grid
experiments run with different ``--epochs``) are never averaged together: each configuration is
its own curve, labelled with what differs ("KDiffE (epochs=30)"), and a note says so. Nothing is
dropped silently and no point mixes two settings, so every curve is one of the paper's sweeps.

Each figure is written as PNG and PDF with a CSV of the numbers drawn beside it
(``figureN.csv``, ``search_<experiment>.csv``). Missing data skips a figure or table with a
one-line note naming the experiment that produces it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdiffe import paper  # noqa: E402
from kdiffe.files import read_json  # noqa: E402
from kdiffe.results import (DEFAULT_STORAGE, RECORD_FILE, REQUIRED, RESULTS_FILE, is_rerun, last_run,  # noqa: E402
                            read_results)
from kdiffe.errors import EXIT_INTERRUPTED, UserError, report  # noqa: E402
from plots import style, tables  # noqa: E402
from plots.aggregate import best_evaluations  # noqa: E402
from plots.claims import write_claims  # noqa: E402
from plots.drawing import category_label, draw, save, sparse_labels  # noqa: E402,F401  (re-exported)
from plots.panels import (  # noqa: E402,F401  (re-exported: what each figure shows)
    Panel, SWEEP_FIGURES, panel_table, scalability_panels, search_experiments, search_panels, sweep_panels)
from plots.provenance import write_what_ran  # noqa: E402
from plots.retraining import write_retrain_tables  # noqa: E402
from plots.splits import write_splits  # noqa: E402
from kdiffe.storage import is_uri, pull_results  # noqa: E402

from plots.panels import METRICS  # noqa: E402,F401
TEXT_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "sweep", "status")
OPTIONAL_COLUMNS = ("n_users", "max_users", "kg_entities")  #: absent columns (older files) read as unknown
FORMATS = ("png", "pdf", "svg")


class UsageError(UserError):
    """A mistake in the command line (reported as ``error: ...``, exit 2)."""


@dataclass
class Rendered:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- loading
def find_results(root: Path) -> list[Path]:
    """``root`` itself if it is not a folder, else every results.csv below it (read_results
    refuses one that is not a regular file)."""
    if root.exists() and not root.is_dir():
        return [root]
    if not root.is_dir():
        raise UsageError(f"--results {root}: no such file or folder; run an experiment first "
                         "(tune/search.py, ablations/run.py or tune/scalability.py) or name the folder "
                         "with --results")
    files = sorted(root.rglob(RESULTS_FILE))
    if not files:
        raise UsageError(f"no {RESULTS_FILE} under {root}; run an experiment first "
                         "(tune/search.py, ablations/run.py or tune/scalability.py)")
    return files


def unfinished(results_file: Path) -> str | None:
    """Why the experiment of ``results_file`` has not ended, from the experiment.json beside it:
    its last run has no exit status (still running, or killed) or was interrupted (exit 130).
    None when it ended (whatever its status) or keeps no record (a results file of its own)."""
    record = results_file.parent / RECORD_FILE
    if not record.is_file():
        return None
    try:
        found = read_json(record, UserError)
    except UserError:
        return None
    run = last_run(found)
    if run is None:
        return None
    if run.get("exit") is None:
        return "its last run has not ended (still running, or killed)"
    return f"its last run was interrupted (exit {EXIT_INTERRUPTED})" if run["exit"] == EXIT_INTERRUPTED else None


def load_results(root: Path, notes: list[str] | None = None, include_unfinished: bool = False) -> pd.DataFrame:
    """All results files under ``root`` as one frame (values checked by
    :func:`kdiffe.results.read_results`); trial ids made unique across experiments. A file with
    a header but no rows yet adds a note to ``notes``. An experiment that has not ended
    (:func:`unfinished`) is left out, with a note, so that no figure, table or claim rests on part
    of a grid; ``include_unfinished`` keeps it (a look at a running search)."""
    paths = find_results(root)
    if not include_unfinished:
        why = {path: unfinished(path) for path in paths}
        if notes is not None:
            notes += [f"{path.parent.name} not drawn: {reason}; it is drawn once it ends (resume it with --resume, "
                      "or draw it now with --unfinished)" for path, reason in why.items() if reason]
        paths = [path for path in paths if not why[path]]
        if not paths:
            raise UsageError(f"--results {root}: no experiment there has ended yet; draw the running ones with "
                             "--unfinished")
    frames = [read_results(path, REQUIRED) for path in paths]
    if notes is not None:
        notes += [f"{path} skipped: no rows yet" for path, f in zip(paths, frames) if not len(f)]
    non_empty = [f for f in frames if len(f)] or frames[:1]
    frame = pd.concat(non_empty, ignore_index=True).drop_duplicates(ignore_index=True)
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].fillna("").astype(str)
    for name in OPTIONAL_COLUMNS:
        if name not in frame.columns:
            frame[name] = np.nan
    frame["trial_id"] = frame["experiment"] + "/" + frame["trial_id"]
    return frame


# ------------------------------------------------------------------------------------- outputs
def file_stem(name: str) -> str:
    """An experiment name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


def render_figures(frame: pd.DataFrame, out: Path, formats: Sequence[str]) -> Rendered:
    """Figures 5-10 and one figure per search under ``out``: images plus a CSV of the numbers
    drawn; notes for what had no data."""
    import matplotlib

    done = Rendered()
    out.mkdir(parents=True, exist_ok=True)
    best = best_evaluations(frame)
    jobs: list[tuple[str, list[list[Panel]], str, pd.DataFrame]] = []
    for spec in SWEEP_FIGURES:
        rows, notes = sweep_panels(best, spec)
        done.notes += notes
        if rows:
            jobs.append((f"figure{spec.number}", rows, f"Figure {spec.number}. {spec.title}", panel_table(rows)))
    panels, notes = scalability_panels(frame)
    done.notes += notes
    if panels:
        jobs.append(("figure10", [panels], f"Figure 10. {paper.FIGURES[10].title}", panel_table([panels])))
    for experiment in search_experiments(best):
        rows, table, notes = search_panels(best, experiment)
        done.notes += notes
        if rows:
            names = ", ".join(style.dataset_name(d) for d in
                              style.ordered(list(table["dataset"].unique()), paper.DATASETS))
            title = f"Search {experiment} ({names}): best validation Recall@20 of each trial"
            jobs.append((f"search_{file_stem(experiment)}", rows, title, table))
    for stem, rows, title, table in jobs:
        with matplotlib.rc_context(style.RC):
            done.written += save(draw(rows, title), out, stem, formats)
        done.written.append(tables.write_csv(table, out / f"{stem}.csv"))
    return done


def table_ii_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluations behind Table II: ablation trials, plus default grid trials of the dataset x
    variant pairs that no ablation covers (hyperparameter searches and scalability runs never)."""
    ablation = frame[frame["kind"] == "ablation"]
    covered = set(zip(ablation["dataset"], ablation["variant"]))
    defaults = frame[(frame["kind"] == "grid") & (frame["sweep"] == "default")]
    extra = defaults[[pair not in covered for pair in zip(defaults["dataset"], defaults["variant"])]]
    return pd.concat([ablation, extra], ignore_index=True)


def render_tables(frame: pd.DataFrame, out: Path) -> Rendered:
    """Tables II and III (markdown and CSV) through plots/tables.py; Table III under both selection
    protocols (table_protocols); the re-runs of searches' best configurations (table_search)."""
    done = Rendered()
    reruns = frame["experiment"].map(is_rerun).astype(bool)
    suite = frame[~reruns]
    ablation = suite[suite["kind"] == "ablation"]
    for name, build, write, rows, hint in (
            ("II", tables.table_ii, tables.write_table_ii, table_ii_rows(suite), "no ablation rows or default grid "
             "trials; run `python ablations/run.py --dataset tiktok baby sports`"),
            ("III", tables.table_iii, tables.write_table_iii, ablation, "no ablation rows; "
             "run `python ablations/run.py --dataset tiktok --seeds 0-4`")):
        table = build(rows) if len(rows) else pd.DataFrame()
        if not len(table):
            done.notes.append(f"table {name} skipped: {hint}")
            continue
        done.written += write(table, out, f"table_{name.lower()}")
    for stem, rows, heading in (("table_protocols", ablation, "Table III, both protocols"),
                                ("table_search", frame[reruns & (frame["kind"] == "ablation")],
                                 "Best configurations of the searches, re-run")):
        table = tables.protocol_table(rows) if len(rows) else pd.DataFrame()
        if len(table):
            done.written += tables.write_blocks(table, out, stem, heading)
    done.written += tables.write_comparisons(frame, out)
    done.written += write_retrain_tables(frame, out)
    return done


def render_all(frame: pd.DataFrame, out: Path, formats: Sequence[str] = ("png", "pdf"),
               root: Path | None = None, data_dir: str | Path | None = None) -> Rendered:
    """Every figure, table and the claims from ``frame``; with ``root`` (the results folder) also
    the table of every run of every experiment there (plots/provenance.py); with ``data_dir`` the
    statistics of every split the results trained on (plots/splits.py)."""
    out.mkdir(parents=True, exist_ok=True)
    drawn, tabled = render_figures(frame, out, formats), render_tables(frame, out)
    ran = write_what_ran(root, out) if root is not None and root.is_dir() else []
    split_files, split_notes = write_splits(frame, data_dir, out) if data_dir is not None else ([], [])
    return Rendered(drawn.written + tabled.written + write_claims(frame, out) + ran + split_files,
                    drawn.notes + tabled.notes + split_notes)


# ------------------------------------------------------------------------------------------ CLI
def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise UsageError(f"--formats {text!r}: choose from {', '.join(FORMATS)}")
    return formats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plots/figures.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=DEFAULT_STORAGE,
                        help="folder searched recursively for results.csv files, or one CSV file, or a storage "
                             f"URI of the runners (s3://..., read through pyarrow.fs) (default {DEFAULT_STORAGE}, "
                             "the runners' --storage default)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <results>/figures; ./figures for a URI)")
    parser.add_argument("--formats", default="png,pdf", help="comma-separated image formats (default png,pdf)")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the datasets, for the statistics of each split (splits.md); "
                             "default $KDIFFE_DATA_DIR, and none when it is unset")
    parser.add_argument("--unfinished", action="store_true",
                        help="also draw experiments whose last run has not ended (running, killed or interrupted); "
                             "by default they are left out, with a note, so that no figure or claim rests on part "
                             "of one")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        formats = parse_formats(args.formats)
        skipped: list[str] = []
        if is_uri(args.results):
            results, default_out = pull_results(args.results), Path(".")
        else:
            results = Path(args.results)
            default_out = results.parent if results.is_file() else results
        frame = load_results(results, skipped, include_unfinished=args.unfinished)
        out = args.out or default_out / "figures"
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: not a folder")
    except UserError as exc:
        return report(exc)
    data_dir = args.data_dir or os.environ.get("KDIFFE_DATA_DIR")
    done = render_all(frame, out, formats, results, data_dir)
    for path in done.written:
        print(f"wrote {path}")
    for note in skipped + done.notes:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
