"""The paper's Figures 5-10 and Tables II-III, redrawn from stored experiment results.

    python plots/figures.py --results results                    # writes results/figures/
    python plots/figures.py --results results --out paper --formats png

Reads every ``results.csv`` under ``--results`` (the tidy files that ``tune/search.py``,
``ablations/run.py`` and ``tune/scalability.py`` write; schema: :mod:`kdiffe.results`) and trains
nothing, so figures can be redrawn after every sweep.

=========  ==================================================================================
Figure 5   effectiveness of denoising: Recall@20 / NDCG@20 against q, every variant with a
           q grid (KDiffE against the unguided variant)
Figure 6   M and R          (grid rows: sweep M / R, plus the sweep="default" trials)
Figure 7   xi and t
Figure 8   tau and theta1   (log axis for theta1)
Figure 9   q                (KDiffE)
Figure 10  seconds per epoch (a) against diffusion steps t per dataset, (b) against users
Table II   datasets x variants (ablation rows; default grid trials where no ablation ran)
Table III  ablations, mean ± std over seeds with a paired test (via plots/tables.py)
=========  ==================================================================================

Accuracy plotted: test Recall@20 / NDCG@20 at each trial's best *validation* Recall@20
evaluation (never the best test epoch), averaged over the trials (seeds) at each point; a band
shows ±1 standard deviation where a point has several. Seconds per epoch: each trial's last
evaluation (the mean over its epochs), on an axis from 0. Dotted grey lines mark each
parameter's default value (that of the experiment's sweep="default" trials, else the paper's).
Each figure is written as PNG and PDF with ``figureN.csv`` holding the numbers drawn. Missing
data skips a figure or table with a one-line note naming the experiment that produces it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdiffe.config import FIELDS  # noqa: E402
from kdiffe.results import REQUIRED, RESULTS_FILE, SchemaError, metric_columns, read_results  # noqa: E402
from plots import style  # noqa: E402
from tune.spaces import PAPER_GRIDS  # noqa: E402

#: Validation metric that picks each trial's evaluation; the test metrics of that row are plotted.
SELECTION = "val_recall@20"
METRICS = ("test_recall@20", "test_ndcg@20")
SECONDS = "seconds_per_epoch"
TEXT_COLUMNS = ("experiment", "kind", "trial_id", "dataset", "variant", "sweep", "status")
OPTIONAL_COLUMNS = ("n_users", "max_users")  #: Figure 10b only; absent columns read as unknown
NUMERIC_COLUMNS = ("epoch", SECONDS, "n_users", "max_users") + metric_columns()
FORMATS = ("png", "pdf", "svg")


class UsageError(ValueError):
    """A mistake in the command line (reported as ``error: ...``, exit 2)."""


@dataclass(frozen=True)
class SweepFigure:
    """One of Figures 5-9: metrics against the one-factor grids of ``params``."""

    number: int
    params: tuple[str, ...]
    title: str
    variants: tuple[str, ...] | None = ("kdiffe",)  #: None: every variant with a grid over params
    compare: str | None = None  #: variant whose absence earns a note (Figure 5: unguided)


SWEEP_FIGURES = (
    SweepFigure(5, ("q",), "Effectiveness of denoising: guided vs unguided diffusion", None, "unguided"),
    SweepFigure(6, ("M", "R"), "Impact of walk length M and walks per node R"),
    SweepFigure(7, ("xi", "t"), r"Impact of the weight $\xi$ of S and of the diffusion steps $t$"),
    SweepFigure(8, ("tau", "theta1"), r"Impact of the temperature $\tau$ and the contrastive weight $\theta_1$"),
    SweepFigure(9, ("q",), "Impact of the number q of entities kept per item in the diffusion view"),
)


@dataclass
class Panel:
    """What one axes shows: named curves (columns x, mean, std, n) and where the default lies."""

    param: str  #: x quantity: a SWEEP_PARAMS name or "users"
    ylabel: str
    curves: dict[str, pd.DataFrame]
    title: str = ""
    xlabel: str = ""
    default: float | None = None
    ticklabels: dict[float, str] = field(default_factory=dict)
    key: dict[str, str] = field(default_factory=dict)  #: identifies the panel in figureN.csv


@dataclass
class Rendered:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- loading
def find_results(root: Path) -> list[Path]:
    """``root`` itself if it is a file, else every results.csv below it."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UsageError(f"--results {root}: no such file or folder")
    files = sorted(root.rglob(RESULTS_FILE))
    if not files:
        raise UsageError(f"no {RESULTS_FILE} under {root}; run an experiment first "
                         "(tune/search.py, ablations/run.py or tune/scalability.py)")
    return files


def check_numeric(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """Coerce numeric columns, failing on a value that is not a number."""
    out = frame.copy()
    for name in NUMERIC_COLUMNS:
        if name not in out.columns:
            continue
        values = pd.to_numeric(out[name], errors="coerce")
        bad = out[name][values.isna() & out[name].notna()]
        if len(bad):
            raise SchemaError(f"{source}: column {name} holds a non-number ({bad.iloc[0]!r})")
        out[name] = values
    return out


def load_results(root: Path) -> pd.DataFrame:
    """All results files under ``root`` as one frame; trial ids made unique across experiments."""
    frames = [check_numeric(read_results(path, REQUIRED), path) for path in find_results(root)]
    non_empty = [f for f in frames if len(f)] or frames[:1]
    frame = pd.concat(non_empty, ignore_index=True).drop_duplicates(ignore_index=True)
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].fillna("").astype(str)
    for name in OPTIONAL_COLUMNS:
        if name not in frame.columns:
            frame[name] = np.nan
    frame["trial_id"] = frame["experiment"] + "/" + frame["trial_id"]
    return frame


# ------------------------------------------------------------------------------------ aggregation
def best_evaluations(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per successful trial: its evaluation with the best validation Recall@20."""
    from plots.tables import best_rows

    return best_rows(frame, SELECTION)


def summarise(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean, sample standard deviation (0 for one value) and count of ``y`` at each ``x``."""
    rows = rows.dropna(subset=[x, y])
    grouped = rows.groupby(x, sort=True)[y]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "n": grouped.count()})
    return out.rename_axis("x").reset_index().astype({"x": float, "mean": float, "std": float, "n": int})


def grid_trials(best: pd.DataFrame, param: str, dataset: str, variant: str) -> pd.DataFrame:
    """Trials of one sweep curve: those moving ``param`` plus the default trials of their experiments."""
    grid = best[(best["kind"] == "grid") & (best["dataset"] == dataset) & (best["variant"] == variant)]
    moved = grid[grid["sweep"] == param]
    if moved.empty:
        return moved
    defaults = grid[(grid["sweep"] == "default") & grid["experiment"].isin(moved["experiment"].unique())]
    return pd.concat([moved, defaults], ignore_index=True)


def sweep_curve(best: pd.DataFrame, param: str, dataset: str, variant: str, metric: str) -> pd.DataFrame:
    """Plotted points of one curve of Figures 5-9: x, mean, std, n."""
    return summarise(grid_trials(best, param, dataset, variant), param, metric)


def default_value(best: pd.DataFrame, param: str, dataset: str, variant: str) -> float:
    """The value the default trials used; the Config (paper) default when they are absent or disagree."""
    trials = grid_trials(best, param, dataset, variant)
    values = trials.loc[trials["sweep"] == "default", param].dropna().unique()
    return float(values[0]) if len(values) == 1 else float(FIELDS[param].default)


def scalability_trials(frame: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """Last evaluation of every successful scalability trial of ``sweep`` ("t" or "users")."""
    rows = frame[(frame["kind"] == "scalability") & (frame["sweep"] == sweep) & (frame["status"] == "ok")]
    rows = rows.dropna(subset=[SECONDS, "epoch"])
    last = rows.sort_values("epoch", kind="stable").groupby("trial_id", sort=False).tail(1)
    if sweep == "users":
        last = last.assign(users=users_axis(last))
    return last


def users_axis(trials: pd.DataFrame) -> pd.Series:
    """Users trained on: n_users where recorded, else max_users (0, all users, stays unknown)."""
    fallback = trials["max_users"].where(trials["max_users"] > 0)
    return trials["n_users"].fillna(fallback).astype(float)


def scalability_curve(frame: pd.DataFrame, sweep: str, dataset: str) -> pd.DataFrame:
    """Plotted points of Figure 10: mean seconds per epoch at each t (or number of users)."""
    trials = scalability_trials(frame, sweep)
    return summarise(trials[trials["dataset"] == dataset], "t" if sweep == "t" else "users", SECONDS)


# --------------------------------------------------------------------------------------- panels
def run_hint(params: Sequence[str], variant: str | None = None) -> str:
    extra = f" --variant {variant}" if variant else ""
    return f"run `python tune/search.py --dataset <dataset> --mode grid --params {','.join(params)}{extra}`"


def sweep_panels(best: pd.DataFrame, spec: SweepFigure) -> tuple[list[list[Panel]], list[str]]:
    """Rows of panels (parameter x metric) by columns (datasets) for one of Figures 5-9, and notes."""
    grid = best[best["kind"] == "grid"]
    if spec.variants is not None:
        grid = grid[grid["variant"].isin(spec.variants)]
    present = [p for p in spec.params if (grid["sweep"] == p).any()]
    if not present:
        hint = run_hint(spec.params) + (f" (and with `--variant {spec.compare}`)" if spec.compare else "")
        return [], [f"figure {spec.number} skipped: no grid rows for {'/'.join(spec.params)}; {hint}"]
    notes = [f"figure {spec.number}: no grid rows for {p}, panels left out; {run_hint([p])}"
             for p in spec.params if p not in present]
    moved = grid[grid["sweep"].isin(present)]
    datasets = style.ordered(list(moved["dataset"].unique()), style.DATASET_ORDER)
    variants = style.ordered(list(moved["variant"].unique()), style.VARIANT_ORDER)
    if spec.compare and spec.compare not in variants:
        notes.append(f"figure {spec.number}: no {spec.compare} grid to compare with; "
                     f"{run_hint(spec.params, spec.compare)}")
    rows: list[list[Panel]] = []
    for param in present:
        for metric in METRICS:
            rows.append([_sweep_panel(best, param, dataset, variants, metric) for dataset in datasets])
    return rows, notes


def _sweep_panel(best: pd.DataFrame, param: str, dataset: str, variants: list[str], metric: str) -> Panel:
    curves = {style.variant_name(v): sweep_curve(best, param, dataset, v, metric) for v in variants}
    curves = {label: curve for label, curve in curves.items() if len(curve)}
    return Panel(param=param, ylabel=style.METRIC_NAMES[metric], curves=curves, title=style.dataset_name(dataset),
                 xlabel=style.PARAM_LABELS[param], default=default_value(best, param, dataset, variants[0]),
                 key={"dataset": dataset, "param": param, "metric": metric})


def scalability_panels(frame: pd.DataFrame) -> tuple[list[Panel], list[str]]:
    """Figure 10: (a) seconds per epoch against t, a curve per dataset; (b) against users."""
    panels, notes = [], []
    steps = scalability_trials(frame, "t")
    if steps.empty:
        notes.append("figure 10a skipped: no scalability rows for t; "
                     "run `python tune/scalability.py --dataset tiktok baby sports --only t`")
    else:
        datasets = style.ordered(list(steps["dataset"].unique()), style.DATASET_ORDER)
        panels.append(Panel(param="t", ylabel="seconds per epoch", title="(a) diffusion steps",
                            xlabel=style.PARAM_LABELS["t"], default=float(FIELDS["t"].default),
                            curves={style.dataset_name(d): scalability_curve(frame, "t", d) for d in datasets},
                            key={"panel": "a", "metric": SECONDS}))
    users = scalability_trials(frame, "users").dropna(subset=["users"])
    if users.empty:
        notes.append("figure 10b skipped: no scalability rows for users; "
                     "run `python tune/scalability.py --dataset sports --only users`")
    else:
        datasets = style.ordered(list(users["dataset"].unique()), style.DATASET_ORDER)
        everyone = users[users["max_users"] == 0]
        names = ", ".join(style.dataset_name(d) for d in datasets)
        panels.append(Panel(param="users", ylabel="seconds per epoch", title=f"(b) users, {names}",
                            xlabel="number of users",
                            curves={style.dataset_name(d): scalability_curve(frame, "users", d) for d in datasets},
                            ticklabels={float(n): f"all\n({int(n):,})" for n in everyone["users"].unique()},
                            key={"panel": "b", "metric": SECONDS}))
    return panels, notes


def panel_table(rows: list[list[Panel]]) -> pd.DataFrame:
    """The numbers a figure draws, one row per point (written as figureN.csv)."""
    parts = [curve.assign(curve=label, **panel.key) for row in rows for panel in row
             for label, curve in panel.curves.items()]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    front = [c for c in table.columns if c not in ("x", "mean", "std", "n")]
    return table[front + ["x", "mean", "std", "n"]]


# -------------------------------------------------------------------------------------- drawing
def tick_values(param: str, observed: Sequence[float]) -> list[float]:
    """The paper's axis values when the data lie on them, else the values observed."""
    paper = [float(v) for v in PAPER_GRIDS.get(param, ())]
    observed = sorted({float(v) for v in observed})
    if paper and all(np.isclose(v, paper).any() for v in observed):
        return sorted(paper)
    return observed


def tick_label(param: str, value: float) -> str:
    if param == "theta1" and value > 0 and float(np.log10(value)).is_integer():
        power = int(np.log10(value))
        return "1" if power == 0 else f"$10^{{{power}}}$"
    if param == "users":
        return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
    return f"{value:g}"


def style_x_axis(ax: Any, panel: Panel) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    observed = [x for curve in panel.curves.values() for x in curve["x"]]
    ticks = tick_values(panel.param, observed)
    if panel.param in style.LOG_PARAMS:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([panel.ticklabels.get(t, tick_label(panel.param, t)) for t in ticks])
    if len(ticks) > 1:
        lo, hi = min(ticks), max(ticks)
        if panel.param in style.LOG_PARAMS:
            pad = (hi / lo) ** 0.05
            ax.set_xlim(lo / pad, hi * pad)
        else:
            pad = 0.05 * (hi - lo)
            ax.set_xlim(lo - pad, hi + pad)


def draw_panel(ax: Any, panel: Panel, colours: dict[str, int], legend: dict[str, Any]) -> None:
    """Curves with markers, ±1 std bands where a point has several trials, the default marked."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if not panel.curves:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if panel.default is not None:
        legend.setdefault("default value", ax.axvline(panel.default, zorder=1, **style.DEFAULT_LINE))
    for label, curve in panel.curves.items():
        index = colours[label]
        (line,) = ax.plot(curve["x"], curve["mean"], marker=style.marker(index), color=style.color(index),
                          label=label, zorder=3)
        line.set_gid("|".join([*panel.key.values(), label]))
        legend.setdefault(label, line)
        if (curve["n"] > 1).any():
            ax.fill_between(curve["x"], curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=style.color(index), alpha=style.BAND_ALPHA, linewidth=0, zorder=2)
            legend.setdefault("±1 std over seeds", Patch(color="0.5", alpha=0.35, linewidth=0))
    style_x_axis(ax, panel)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.margins(y=0.15)
    if panel.key.get("metric") == SECONDS:
        top = max(float((c["mean"] + c["std"]).max()) for c in panel.curves.values())
        ax.set_ylim(0, 1.12 * top if top > 0 else 1)


def draw(rows: list[list[Panel]], title: str) -> Any:
    """A figure of panels; titles on the top row, y labels on the left, one legend below."""
    from matplotlib.figure import Figure

    ncols = max(len(row) for row in rows)
    width = min(style.PAGE_WIDTH, 1.2 + 2.3 * ncols)
    fig = Figure(figsize=(width, style.ROW_HEIGHT * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    colours = {label: i for i, label in enumerate(_first_seen(rows))}
    legend: dict[str, Any] = {}
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            draw_panel(ax, panel, colours, legend)
            last_of_block = r == len(rows) - 1 or rows[r + 1][c].param != panel.param
            if r == 0:
                ax.set_title(panel.title, fontweight="bold")
            if last_of_block:
                ax.set_xlabel(panel.xlabel)
            if c == 0 or panel.ylabel != row[c - 1].ylabel:
                ax.set_ylabel(panel.ylabel)
        for c in range(len(row), ncols):
            axes[r][c].set_visible(False)
    fig.suptitle(textwrap.fill(title, width=int(13 * width)))
    names = sorted(legend, key=lambda n: (n not in colours, colours.get(n, 0)))
    fig.legend([legend[n] for n in names], names, loc="outside lower center", frameon=False,
               ncols=len(names) if width >= 5 or len(names) <= 2 else 2)
    return fig


def _first_seen(rows: list[list[Panel]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for panel in row:
            seen.update(dict.fromkeys(panel.curves))
    return list(seen)


def save(fig: Any, out: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------- outputs
def render_figures(frame: pd.DataFrame, out: Path, formats: Sequence[str]) -> Rendered:
    """Figures 5-10 under ``out``: images plus figureN.csv; notes for what had no data."""
    import matplotlib

    done = Rendered()
    best = best_evaluations(frame)
    jobs: list[tuple[int, list[list[Panel]], str]] = []
    for spec in SWEEP_FIGURES:
        rows, notes = sweep_panels(best, spec)
        done.notes += notes
        if rows:
            jobs.append((spec.number, rows, f"Figure {spec.number}. {spec.title}"))
    panels, notes = scalability_panels(frame)
    done.notes += notes
    if panels:
        jobs.append((10, [panels], "Figure 10. Scalability: seconds per training epoch"))
    for number, rows, title in jobs:
        with matplotlib.rc_context(style.RC):
            done.written += save(draw(rows, title), out, f"figure{number}", formats)
        data = out / f"figure{number}.csv"
        panel_table(rows).to_csv(data, index=False)
        done.written.append(data)
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
    """Tables II and III (markdown and CSV) through plots/tables.py."""
    done = Rendered()
    try:
        from plots import tables
    except ImportError as exc:
        done.notes.append(f"tables skipped: plots/tables.py cannot be imported ({exc})")
        return done
    for name, build, stem, rows, hint in (
            ("II", "table_ii", "table_ii", table_ii_rows(frame), "no ablation rows or default grid trials; "
             "run `python ablations/run.py --dataset tiktok baby sports`"),
            ("III", "table_iii", "table_iii", frame[frame["kind"] == "ablation"], "no ablation rows; "
             "run `python ablations/run.py --dataset tiktok --seeds 5`")):
        missing = [f for f in (build, "write_table") if not hasattr(tables, f)]
        if missing:
            done.notes.append(f"table {name} skipped: plots/tables.py lacks {', '.join(missing)}")
            continue
        table = getattr(tables, build)(rows) if len(rows) else pd.DataFrame()
        if not len(table):
            done.notes.append(f"table {name} skipped: {hint}")
            continue
        writer = getattr(tables, f"write_{stem}", tables.write_table)
        done.written += writer(table, out, stem)
    return done


def render_all(frame: pd.DataFrame, out: Path, formats: Sequence[str] = ("png", "pdf")) -> Rendered:
    out.mkdir(parents=True, exist_ok=True)
    figures, tables = render_figures(frame, out, formats), render_tables(frame, out)
    return Rendered(figures.written + tables.written, figures.notes + tables.notes)


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
    parser.add_argument("--results", required=True, type=Path,
                        help="folder searched recursively for results.csv files (or one CSV file)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/figures)")
    parser.add_argument("--formats", default="png,pdf", help="comma-separated image formats (default png,pdf)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        formats = parse_formats(args.formats)
        frame = load_results(args.results)
        default_out = args.results.parent if args.results.is_file() else args.results
        out = args.out or default_out / "figures"
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: not a folder")
    except (SchemaError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = render_all(frame, out, formats)
    for path in done.written:
        print(f"wrote {path}")
    for note in done.notes:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
