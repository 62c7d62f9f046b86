"""plots/figures.py: Figures 5-10 and Tables II-III from stored results.

The main fixture is a results tree built from real tiny runs of ``kdiffe.train`` (synthetic data,
two epochs), written as the experiments write it (one results.csv per experiment folder). The
expected numbers are computed here independently of plots/ (pick each trial's best validation
Recall@20 row, then average its test metrics over seeds) and compared with what the figures draw
(matplotlib Line2D data) and with the markdown tables.
"""

from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kdiffe
from kdiffe.results import COLUMNS, result_row
from plots import figures

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="synthetic", syn_users=100, syn_items=60, epochs=2, dim=8, denoiser_hidden=16, kg_iters=3,
            batch_size=512, eval_batch=256, patience=0)


# ------------------------------------------------------------------------------------- fixtures
class Runs:
    """Tiny real trainings, each config trained once and its reports reused."""

    def __init__(self) -> None:
        self.cache: dict[tuple, list[dict]] = {}

    def reports(self, **changes) -> tuple[kdiffe.Config, list[dict]]:
        config = kdiffe.Config(**{**TINY, **changes})
        key = tuple(sorted(config.to_dict().items(), key=lambda kv: kv[0]))
        key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in key)
        if key not in self.cache:
            reports: list[dict] = []
            kdiffe.train(config, report=reports.append, log=lambda _: None)
            self.cache[key] = reports
        return config, self.cache[key]

    def rows(self, experiment: str, trial_id: str, kind: str, sweep: str = "", **changes) -> list[dict]:
        config, reports = self.reports(**changes)
        n_users = changes.get("max_users") or config.syn_users
        return [result_row(experiment, trial_id, config.to_dict(), r, kind=kind, sweep=sweep, n_users=n_users,
                           n_items=config.syn_items) for r in reports]


def write(root: Path, experiment: str, rows: list[dict]) -> Path:
    folder = root / experiment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


GRID_POINTS = [("default", {}, (0, 1)), ("M", {"M": 30}, (0, 1)), ("R", {"R": 6}, (0,)), ("xi", {"xi": 0.3}, (0,)),
               ("t", {"t": 2}, (0,)), ("tau", {"tau": 0.1}, (0,)), ("theta1", {"theta1": 0.1}, (0,)),
               ("q", {"q": 2}, (0, 1))]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results tree like the experiments leave: grid (two variants), ablation, scalability."""
    root = tmp_path_factory.mktemp("results")
    runs = Runs()
    grid, n = [], 0
    for sweep, point, seeds in GRID_POINTS:
        for seed in seeds:
            grid += runs.rows("syn-grid", f"g_{n:05d}", "grid", sweep, seed=seed, **point)
            n += 1
    failed = result_row("syn-grid", f"g_{n:05d}", kdiffe.Config(**TINY, M=80).to_dict(), {}, kind="grid",
                        sweep="M", status="error", error="RuntimeError: boom")
    write(root, "syn-grid", grid + [failed])
    unguided = runs.rows("syn-unguided", "u_00000", "grid", "default", variant="unguided", seed=0) + \
        runs.rows("syn-unguided", "u_00001", "grid", "q", variant="unguided", seed=0, q=2)
    write(root / "nested", "syn-unguided", unguided)
    ablation = [row for i, (variant, seed) in enumerate([(v, s) for v in ("kdiffe", "no_cl") for s in (0, 1)])
                for row in runs.rows("syn-ablation", f"a_{i:05d}", "ablation", variant=variant, seed=seed)]
    write(root, "syn-ablation", ablation)
    scal = runs.rows("syn-scal", "s_00000", "scalability", "t", t=2, seed=0) + \
        runs.rows("syn-scal", "s_00001", "scalability", "t", t=10, seed=0) + \
        runs.rows("syn-scal", "s_00002", "scalability", "users", max_users=50, seed=0) + \
        runs.rows("syn-scal", "s_00003", "scalability", "users", max_users=0, seed=0)
    write(root, "syn-scal", scal)
    return root


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory) -> tuple[Path, str]:
    """The CLI run once over the fixture: (output folder, stderr)."""
    out = tmp_path_factory.mktemp("figures")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = figures.main(["--results", str(results), "--out", str(out)])
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def all_rows(root: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(root.rglob("results.csv"))]
    frame = pd.concat(frames, ignore_index=True)
    frame["trial_id"] = frame["experiment"] + "/" + frame["trial_id"]
    return frame


def best_by_hand(frame: pd.DataFrame) -> pd.DataFrame:
    """Each ok trial's row at its highest validation Recall@20 (the first such evaluation)."""
    ok = frame[frame["status"] == "ok"]
    return ok.loc[ok.groupby("trial_id")["val_recall@20"].idxmax()]


def expected_sweep(frame: pd.DataFrame, param: str, variant: str, metric: str) -> pd.Series:
    best = best_by_hand(frame[(frame["kind"] == "grid") & (frame["variant"] == variant)])
    points = best[best["sweep"].isin([param, "default"])]
    return points.groupby(param)[metric].mean()


def lines(fig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {line.get_gid(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
            for ax in fig.axes for line in ax.get_lines() if line.get_gid()}


# ---------------------------------------------------------------------------------------- tests
def test_cli_writes_every_figure_and_table(rendered):
    out, err = rendered
    for number in range(5, 11):
        for ext in ("png", "pdf", "csv"):
            path = out / f"figure{number}.{ext}"
            assert path.exists() and path.stat().st_size > 0, path
    for stem in ("table_ii", "table_iii"):
        assert (out / f"{stem}.md").exists() and (out / f"{stem}.csv").exists()
    assert "skipped" not in err, err


@pytest.mark.parametrize("spec", figures.SWEEP_FIGURES, ids=lambda s: f"figure{s.number}")
def test_plotted_sweeps_equal_best_validation_test_means(results, spec):
    frame = all_rows(results)
    loaded = figures.load_results(results)
    rows, notes = figures.sweep_panels(figures.best_evaluations(loaded), spec)
    assert not notes
    drawn = lines(figures.draw(rows, "t"))
    variants = ("kdiffe", "unguided") if spec.number == 5 else ("kdiffe",)
    expected_keys = {f"synthetic|{p}|{m}|{kdiffe_name(v)}" for p in spec.params for m in figures.METRICS
                     for v in variants}
    assert set(drawn) == expected_keys
    for key, (x, y) in drawn.items():
        _, param, metric, label = key.split("|")
        variant = {kdiffe_name(v): v for v in variants}[label]
        want = expected_sweep(frame, param, variant, metric)
        np.testing.assert_allclose(x, want.index.to_numpy(float))
        np.testing.assert_allclose(y, want.to_numpy(float))
        assert 80 not in x  # the errored trial is left out


def kdiffe_name(variant: str) -> str:
    from plots.style import variant_name

    return variant_name(variant)


def test_figure_csv_holds_the_plotted_numbers(results, rendered):
    out, _ = rendered
    table = pd.read_csv(out / "figure6.csv")
    frame = all_rows(results)
    m = table[(table["param"] == "M") & (table["metric"] == "test_ndcg@20")]
    want = expected_sweep(frame, "M", "kdiffe", "test_ndcg@20")
    np.testing.assert_allclose(m["mean"], want.to_numpy())
    assert list(m["n"]) == [2, 2]  # two seeds at M=30 and at the default M=50


def test_defaults_marked_and_paper_ticks(results):
    loaded = figures.load_results(results)
    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 8)
    rows, _ = figures.sweep_panels(figures.best_evaluations(loaded), spec)
    fig = figures.draw(rows, "t")
    by_param = {}
    for ax, panel in zip(fig.axes, [p for row in rows for p in row]):
        by_param[panel.param] = ax
        verticals = [ln for ln in ax.get_lines() if not ln.get_gid()]
        assert [float(ln.get_xdata()[0]) for ln in verticals] == [panel.default]
    assert rows[0][0].default == 0.5 and rows[2][0].default == 0.01
    np.testing.assert_allclose(by_param["tau"].get_xticks(), [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    np.testing.assert_allclose(by_param["theta1"].get_xticks(), [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert by_param["theta1"].get_xscale() == "log"


def test_seed_band_drawn_for_repeated_points(results):
    loaded = figures.load_results(results)
    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 6)
    rows, _ = figures.sweep_panels(figures.best_evaluations(loaded), spec)
    curve = rows[0][0].curves["KDiffE"]
    frame = all_rows(results)
    best = best_by_hand(frame[(frame["kind"] == "grid") & (frame["variant"] == "kdiffe")])
    at30 = best[(best["sweep"] == "M")]["test_recall@20"]
    assert curve.loc[curve["x"] == 30, "std"].item() == pytest.approx(at30.std(ddof=1))
    fig = figures.draw(rows, "t")
    assert fig.axes[0].collections, "no ±1 std band"


def test_scalability_values(results):
    frame = all_rows(results)
    ok = frame[(frame["kind"] == "scalability")]
    last = ok.sort_values("epoch").groupby("trial_id").tail(1)
    panels, notes = figures.scalability_panels(figures.load_results(results))
    assert not notes
    fig = figures.draw([panels], "t")
    drawn = lines(fig)
    x, y = drawn["a|seconds_per_epoch|Synthetic"]
    want = last[last["sweep"] == "t"].sort_values("t")
    np.testing.assert_allclose(x, want["t"])
    np.testing.assert_allclose(y, want["seconds_per_epoch"])
    x, y = drawn["b|seconds_per_epoch|Synthetic"]
    np.testing.assert_allclose(x, [50, 100])
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert labels[-1].startswith("all") and "100" in labels[-1]
    assert fig.axes[0].get_ylim()[0] == 0


def test_tables_hold_expected_numbers(results, rendered):
    out, _ = rendered
    frame = all_rows(results)
    best = best_by_hand(frame[frame["kind"] == "ablation"])
    md_iii = (out / "table_iii.md").read_text()
    md_ii = (out / "table_ii.md").read_text()
    for variant in ("kdiffe", "no_cl"):
        values = best[best["variant"] == variant]["test_recall@20"]
        assert f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" in md_iii
        assert f"{values.mean():.4f}" in md_ii
    # unguided ran only in a grid: Table II takes its default trial
    unguided = best_by_hand(frame[(frame["variant"] == "unguided") & (frame["sweep"] == "default")])
    assert f"| unguided | 1 | {unguided['test_recall@20'].item():.4f}" in md_ii


def test_best_validation_epoch_not_best_test():
    """Hand-built trials: test peaks at epoch 1, validation at epoch 2; two seeds at M=30."""
    rows = []
    for trial, (sweep, m, seed, tests) in enumerate([("default", 50, 0, (0.9, 0.20)), ("M", 30, 0, (0.8, 0.10)),
                                                     ("M", 30, 1, (0.7, 0.30))]):
        config = kdiffe.Config(M=m, seed=seed).to_dict()
        for epoch, (val, test) in enumerate([(0.1, tests[0]), (0.5, tests[1])], start=1):
            rows.append(result_row("e", f"t{trial}", config, {"epoch": epoch, "val_recall@20": val, "val_ndcg@20": val,
                                                              "test_recall@20": test, "test_ndcg@20": test,
                                                              "seconds_per_epoch": 1.0}, kind="grid", sweep=sweep))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    curve = figures.sweep_curve(figures.best_evaluations(frame), "M", "synthetic", "kdiffe", "test_recall@20")
    assert curve["x"].tolist() == [30.0, 50.0]
    assert curve["mean"].tolist() == pytest.approx([0.2, 0.2])
    assert curve["std"].tolist() == pytest.approx([math.sqrt(0.02), 0.0])
    assert curve["n"].tolist() == [2, 1]


def test_missing_data_gives_skip_notes(results, tmp_path, capsys):
    only = tmp_path / "only-ablation"
    only.mkdir()
    (only / "results.csv").write_text((results / "syn-ablation" / "results.csv").read_text())
    assert figures.main(["--results", str(only), "--out", str(tmp_path / "out"), "--formats", "png"]) == 0
    err = capsys.readouterr().err
    for number in (5, 6, 7, 8, 9):
        assert f"figure {number} skipped: no grid rows" in err
    assert "--mode grid --params M,R`" in err
    assert "figure 10a skipped" in err and "tune/scalability.py" in err
    assert "figure 10b skipped" in err
    assert "table II skipped" not in err and (tmp_path / "out" / "table_iii.md").exists()
    assert not list((tmp_path / "out").glob("figure*"))


def test_partial_grid_and_missing_comparison(results, tmp_path, capsys):
    frame = pd.read_csv(results / "syn-grid" / "results.csv")
    part = frame[frame["sweep"].isin(["default", "M", "q"])]
    (tmp_path / "r").mkdir()
    part.to_csv(tmp_path / "r" / "results.csv", index=False)
    assert figures.main(["--results", str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--formats", "png"]) == 0
    err = capsys.readouterr().err
    assert "figure 6: no grid rows for R" in err and (tmp_path / "out" / "figure6.png").exists()
    assert "figure 5: no unguided grid" in err and "--variant unguided" in err
    assert "table III skipped: no ablation rows" in err


def test_missing_columns_fail_naming_them(results, tmp_path):
    frame = pd.read_csv(results / "syn-ablation" / "results.csv").drop(columns=["test_ndcg@20", "q"])
    bad = tmp_path / "bad"
    bad.mkdir()
    frame.to_csv(bad / "results.csv", index=False)
    proc = subprocess.run([sys.executable, "plots/figures.py", "--results", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines_ = proc.stderr.strip().splitlines()
    assert len(lines_) == 1 and lines_[0].startswith("error: ")
    assert "test_ndcg@20" in lines_[0] and "q" in lines_[0] and "missing columns" in lines_[0]


@pytest.mark.parametrize("content, message", [
    (None, "no results.csv under"),
    ("", "not a readable CSV"),
    ("NONNUMERIC", "holds a non-number"),
])
def test_user_mistakes_exit_2(results, tmp_path, capsys, content, message):
    folder = tmp_path / "r"
    folder.mkdir()
    if content == "NONNUMERIC":
        frame = pd.read_csv(results / "syn-ablation" / "results.csv")
        frame["test_recall@20"] = frame["test_recall@20"].astype(object)
        frame.loc[0, "test_recall@20"] = "abc"
        frame.to_csv(folder / "results.csv", index=False)
    elif content is not None:
        (folder / "results.csv").write_text(content)
    assert figures.main(["--results", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bad_options_exit_2(tmp_path, capsys):
    assert figures.main(["--results", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        figures.main([])
    assert exc.value.code == 2


def test_missing_table_function_skips_only_that_table(results, tmp_path, capsys, monkeypatch):
    from plots import tables

    monkeypatch.delattr(tables, "table_iii")
    out = tmp_path / "out"
    done = figures.render_tables(figures.load_results(results), out)
    assert done.notes == ["table III skipped: plots/tables.py lacks table_iii"]
    assert (out / "table_ii.md").exists() and not (out / "table_iii.md").exists()
