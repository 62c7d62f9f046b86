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
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kdiffe
from kdiffe.results import COLUMNS, result_row
from plots import aggregate, figures

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
    rows, notes = figures.sweep_panels(aggregate.best_evaluations(loaded), spec)
    assert not notes
    drawn = lines(figures.draw(rows, "t"))
    variants = ("kdiffe", "unguided") if spec.number == 5 else ("kdiffe",)
    expected_keys = {f"synthetic|{p}|{m}|{kdiffe_name(v)}" for p in spec.params for m in figures.METRICS
                     for v in variants}
    seeds = {kdiffe_name(v): frame[(frame["variant"] == v) & (frame["status"] == "ok")]["seed"].nunique()
             for v in variants}
    counted = len(set(seeds.values())) > 1  # then each label says its seeds: "KDiffE (2 seeds)"
    named = {key: re.sub(r" \((\d+) seeds?\)$", "", key) for key in drawn}
    assert set(named.values()) == expected_keys
    for key, (x, y) in drawn.items():
        _, param, metric, label = named[key].split("|")
        if counted:
            k = seeds[label]
            assert key.endswith(f" ({k} seed{'s' if k != 1 else ''})"), key
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
    rows, _ = figures.sweep_panels(aggregate.best_evaluations(loaded), spec)
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
    rows, _ = figures.sweep_panels(aggregate.best_evaluations(loaded), spec)
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
    curve = aggregate.sweep_curve(aggregate.best_evaluations(frame), "M", "synthetic", "kdiffe", "test_recall@20")
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
    # one side of the guided/unguided comparison: Figure 5 is skipped, naming the command for the other
    assert "figure 5 skipped" in err
    assert "`python tune/search.py --dataset synthetic --mode grid --params q --variant unguided`" in err
    assert not (tmp_path / "out" / "figure5.png").exists() and (tmp_path / "out" / "figure9.png").exists()
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
        figures.main(["--formats"])
    assert exc.value.code == 2


# ------------------------------------------------------------------- hand-built frames (issue 9)
def hand_rows(experiment: str, trial_id: str, kind: str, sweep: str, evaluations, **config) -> list[dict]:
    """Rows of one trial: ``evaluations`` are (epoch, val_recall@20, test_recall@20); NDCG = recall / 2."""
    cfg = kdiffe.Config(**config).to_dict()
    return [result_row(experiment, trial_id, cfg, {"epoch": e, "val_recall@20": v, "val_ndcg@20": v / 2,
                                                    "test_recall@20": t, "test_ndcg@20": t / 2,
                                                    "seconds_per_epoch": 1.0}, kind=kind, sweep=sweep)
            for e, v, t in evaluations]


def hand_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["trial_id"] = frame["experiment"] + "/" + frame["trial_id"]
    for name in ("n_users", "max_users"):
        frame[name] = pd.to_numeric(frame.get(name), errors="coerce")
    return frame


def write_hand(root: Path, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for experiment, part in frame.groupby("experiment"):
        folder = root / experiment
        folder.mkdir(parents=True, exist_ok=True)
        part.to_csv(folder / "results.csv", index=False)
    return root


def test_results_default_is_the_storage_default(tmp_path, monkeypatch, capsys):
    """(a) without --results the runners' default folder ``results`` (relative to cwd) is read."""
    from kdiffe.results import DEFAULT_STORAGE

    assert DEFAULT_STORAGE == "results"
    assert figures.build_parser().parse_args([]).results == DEFAULT_STORAGE
    monkeypatch.chdir(tmp_path)
    assert figures.main(["--formats", "png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --results results: no such file or folder") and err.count("\n") == 1
    write_hand(tmp_path / "results", hand_rows("abl", "a0", "ablation", "", [(1, 0.2, 0.1)], seed=0))
    assert figures.main(["--formats", "png"]) == 0
    assert (tmp_path / "results" / "figures" / "table_ii.md").exists()


def search_rows() -> list[dict]:
    """An optuna-like search over M, theta1 and variant (xi fixed): known best validation values."""
    trials = [  # (M, theta1, variant, evaluations (epoch, val, test))
        (30, 1e-3, "kdiffe", [(1, 0.10, 0.30), (2, 0.20, 0.05)]),
        (80, 1e-1, "kdiffe", [(1, 0.15, 0.10)]),
        (150, 1e-4, "no_cl", [(1, 0.05, 0.02), (2, 0.12, 0.03), (3, 0.08, 0.04)]),
        (120, 0.5, "no_cl", [(1, 0.25, 0.01)]),
    ]
    rows = []
    for i, (m, theta1, variant, evaluations) in enumerate(trials):
        rows += hand_rows("tk-optuna", f"o{i}", "search", "", evaluations, M=m, theta1=theta1, variant=variant,
                          seed=0)
    rows += hand_rows("tk-optuna", "o9", "search", "", [], M=60, theta1=1e-2, seed=0)  # no evaluation
    rows.append(result_row("tk-optuna", "o8", kdiffe.Config(M=70).to_dict(), {}, kind="search",
                           status="error", error="boom"))
    return rows


def test_search_scatter_one_panel_per_searched_parameter(tmp_path):
    """(b) kind == "search": a scatter per moved parameter of each trial's best validation Recall@20."""
    frame = hand_frame(search_rows())
    best = aggregate.best_evaluations(frame)
    assert figures.search_experiments(best) == ["tk-optuna"]
    rows, table, notes = figures.search_panels(best, "tk-optuna")
    assert not notes
    panels = [p for row in rows for p in row]
    assert [p.param for p in panels] == ["M", "theta1", "variant"]  # xi, R, ... never moved
    m = panels[0]
    assert set(m.curves) == {"KDiffE", "KDiffE w/o CL"}
    np.testing.assert_allclose(m.curves["KDiffE"]["x"], [30, 80])
    np.testing.assert_allclose(m.curves["KDiffE"]["y"], [0.20, 0.15])  # best validation, not test
    np.testing.assert_allclose(m.curves["KDiffE w/o CL"]["x"], [120, 150])
    np.testing.assert_allclose(m.curves["KDiffE w/o CL"]["y"], [0.25, 0.12])
    assert m.best == (120.0, 0.25) and m.default == 50.0
    assert table["val_recall@20"].tolist() == pytest.approx([0.20, 0.15, 0.12, 0.25])
    assert table.loc[table["best"], "trial_id"].tolist() == ["tk-optuna/o3"]
    assert {"M", "theta1"} <= set(table.columns) and "xi" not in table.columns

    fig = figures.draw(rows, "t")
    by_param = dict(zip([p.param for p in panels], fig.axes))
    assert by_param["theta1"].get_xscale() == "log" and by_param["M"].get_xscale() == "linear"
    offsets = {c.get_gid(): c.get_offsets() for ax in fig.axes for c in ax.collections if c.get_gid()}
    np.testing.assert_allclose(offsets["synthetic|theta1|val_recall@20|KDiffE"], [[1e-3, 0.20], [1e-1, 0.15]])
    labels = [t.get_text() for t in by_param["variant"].get_xticklabels()]
    assert labels == ["KDiffE", "w/o CL"]

    out = tmp_path / "out"
    done = figures.render_figures(frame, out, ("png",))
    assert out / "search_tk-optuna.png" in done.written and out / "search_tk-optuna.csv" in done.written
    written = pd.read_csv(out / "search_tk-optuna.csv")
    assert written["trial_id"].tolist() == ["tk-optuna/o0", "tk-optuna/o1", "tk-optuna/o2", "tk-optuna/o3"]


def test_a_baselines_search_gets_a_panel_for_each_of_its_own_parameters():
    """FREEDOM's search moves edge_drop (its own) beside theta1 and lr: a panel each, labelled, the
    log-scale ones on a log axis, its published default marked."""
    points = [(0.6, 1e-4, 1e-3, 0.08), (0.8, 1e-3, 2e-3, 0.09), (0.9, 1e-5, 5e-3, 0.07)]
    rows = []
    for i, (rho, theta1, lr, val) in enumerate(points):
        rows += hand_rows("fr", f"f{i}", "search", "", [(1, val, val)], model="freedom", edge_drop=rho, theta1=theta1,
                          lr=lr, seed=0)
    rows, _, notes = figures.search_panels(aggregate.best_evaluations(hand_frame(rows)), "fr")
    panels = {p.param: p for row in rows for p in row}
    assert not notes and list(panels) == ["theta1", "edge_drop", "lr"]
    assert panels["edge_drop"].xlabel == r"dropped edges $\rho$" and panels["edge_drop"].default == 0.8
    assert panels["edge_drop"].best == (0.8, 0.09)
    assert panels["theta1"].xlabel == r"modality BPR weight $\theta_1$"  # FREEDOM's θ1 weighs no contrast
    assert panels["lr"].xlabel == "learning rate"
    fig = figures.draw(rows, "t")
    scales = {p: ax.get_xscale() for p, ax in zip(panels, fig.axes)}
    assert scales == {"theta1": "log", "edge_drop": "linear", "lr": "log"}


def test_search_without_variation_is_noted(tmp_path):
    rows = hand_rows("same", "s0", "search", "", [(1, 0.1, 0.1)], seed=0) + \
        hand_rows("same", "s1", "search", "", [(1, 0.2, 0.1)], seed=1)
    done = figures.render_figures(hand_frame(rows), tmp_path, ("png",))
    assert done.notes[-1] == "search same on synthetic skipped: no parameter varies across its 2 successful trials"
    assert not list(tmp_path.glob("search_*"))


def q_grid(experiment: str, variant: str, dataset_rows=("synthetic",), seed: int = 0, **config) -> list[dict]:
    rows = []
    for dataset in dataset_rows:
        for i, (sweep, q, val) in enumerate([("default", 1, 0.2), ("q", 2, 0.3), ("q", 3, 0.1)]):
            rows += hand_rows(experiment, f"{dataset}-{variant}-{i}-{seed}", "grid", sweep, [(1, val, val)],
                              dataset=dataset, q=q, variant=variant, seed=seed, **config)
    return rows


@pytest.mark.parametrize("variant, missing", [("kdiffe", "--params q --variant unguided`"),
                                              ("unguided", "--params q`")])
def test_figure5_needs_both_sides(variant, missing):
    """(c) one curve alone is no guided-vs-unguided figure: skipped with the command that runs the other."""
    best = aggregate.best_evaluations(hand_frame(q_grid("g", variant)))
    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 5)
    rows, notes = figures.sweep_panels(best, spec)
    assert rows == [] and len(notes) == 1
    assert notes[0].startswith("figure 5 skipped: it compares KDiffE vs KDiffE w/o guidance")
    assert f"`python tune/search.py --dataset synthetic --mode grid {missing}" in notes[0]
    nine = next(s for s in figures.SWEEP_FIGURES if s.number == 9)
    assert bool(figures.sweep_panels(best, nine)[0]) == (variant == "kdiffe")


def test_figure5_leaves_out_a_dataset_with_one_side():
    frame = hand_frame(q_grid("g", "kdiffe", ("synthetic", "tiktok")) + q_grid("u", "unguided", ("tiktok",)))
    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 5)
    rows, notes = figures.sweep_panels(aggregate.best_evaluations(frame), spec)
    assert [[p.key["dataset"] for p in row] for row in rows] == [["tiktok"], ["tiktok"]]
    assert set(rows[0][0].curves) == {"KDiffE", "KDiffE w/o guidance"}
    assert notes == ["figure 5: synthetic left out (it compares KDiffE vs KDiffE w/o guidance); synthetic has no "
                     "unguided grid over q: run `python tune/search.py --dataset synthetic --mode grid --params q "
                     "--variant unguided`"]


def test_replicates_pool_only_equal_configurations():
    """(d) two experiments that differ only in epochs: two curves, never one average."""
    rows = q_grid("short", "kdiffe", epochs=30, seed=0) + q_grid("short", "kdiffe", epochs=30, seed=1)
    long = q_grid("long", "kdiffe", epochs=50, seed=0)
    long = [{**r, "test_recall@20": r["test_recall@20"] + 0.5} for r in long]  # same validation, other test
    frame = hand_frame(rows + long)
    best = aggregate.best_evaluations(frame)
    curves = aggregate.sweep_curves(best, "q", "synthetic", "kdiffe", "test_recall@20")
    assert list(curves) == ["KDiffE (epochs=30; 2 seeds)", "KDiffE (epochs=50; 1 seed)"]  # Figure 6's case
    short, long_ = curves["KDiffE (epochs=30; 2 seeds)"], curves["KDiffE (epochs=50; 1 seed)"]
    assert short["x"].tolist() == [1, 2, 3] and short["n"].tolist() == [2, 2, 2]  # seeds 0 and 1 pooled
    assert short["mean"].tolist() == pytest.approx([0.2, 0.3, 0.1]) and short["std"].tolist() == [0, 0, 0]
    assert long_["n"].tolist() == [1, 1, 1] and long_["mean"].tolist() == pytest.approx([0.7, 0.8, 0.6])
    with pytest.raises(ValueError, match="2 configurations"):
        aggregate.sweep_curve(best, "q", "synthetic", "kdiffe", "test_recall@20")

    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 9)
    rows_, notes = figures.sweep_panels(best, spec)
    assert notes == ["figure 9 (q, Synthetic): trials differ in epochs; drawn as separate curves, "
                     "never averaged together"]
    drawn = lines(figures.draw(rows_, "t"))
    labels = {30: "KDiffE (epochs=30; 2 seeds)", 50: "KDiffE (epochs=50; 1 seed)"}
    assert set(drawn) == {f"synthetic|q|{m}|{labels[e]}" for m in figures.METRICS for e in (30, 50)}
    np.testing.assert_allclose(drawn[f"synthetic|q|test_recall@20|{labels[50]}"][1], [0.7, 0.8, 0.6])
    table = figures.panel_table(rows_)
    assert set(table["curve"]) == set(labels.values())


def test_equal_configurations_pool_across_experiments():
    """Same configuration, two experiments (seeds 0 and 1): one curve, mean ± std over both."""
    frame = hand_frame(q_grid("a", "kdiffe", seed=0) + [
        {**r, "test_recall@20": r["test_recall@20"] + 0.1} for r in q_grid("b", "kdiffe", seed=1)])
    curves = aggregate.sweep_curves(aggregate.best_evaluations(frame), "q", "synthetic", "kdiffe", "test_recall@20")
    assert list(curves) == ["KDiffE"]
    assert curves["KDiffE"]["n"].tolist() == [2, 2, 2]
    assert curves["KDiffE"]["mean"].tolist() == pytest.approx([0.25, 0.35, 0.15])
    assert curves["KDiffE"]["std"].tolist() == pytest.approx([math.sqrt(0.005)] * 3)


def test_scalability_configurations_kept_apart():
    rows = []
    for i, (t, epochs, seconds) in enumerate([(2, 3, 1.0), (10, 3, 2.0), (2, 5, 4.0), (10, 5, 8.0)]):
        config = kdiffe.Config(t=t, epochs=epochs, seed=0).to_dict()
        rows.append(result_row("scal", f"s{i}", config, {"epoch": 1, "seconds_per_epoch": seconds},
                               kind="scalability", sweep="t"))
    panels, notes = figures.scalability_panels(hand_frame(rows))
    curves = panels[0].curves
    assert list(curves) == ["Synthetic (epochs=3)", "Synthetic (epochs=5)"]
    assert curves["Synthetic (epochs=5)"]["mean"].tolist() == [4.0, 8.0]
    assert "figure 10a: trials differ in epochs" in notes[0]


def test_one_configuration_keeps_one_label_across_panels():
    """Figure 6 from two experiments: A (epochs=30) sweeps M and R, B (epochs=50) sweeps M only.
    The R panel's one curve is still labelled epochs=30, so its colour matches A's M curve."""
    rows = []
    for experiment, epochs, sweeps in (("a", 30, ("M", "R")), ("b", 50, ("M",))):
        rows += hand_rows(experiment, "d", "grid", "default", [(1, 0.2, 0.2)], epochs=epochs, seed=0)
        for i, param in enumerate(sweeps):
            value = {"M": 30, "R": 6}[param]
            rows += hand_rows(experiment, f"g{i}", "grid", param, [(1, 0.1, 0.1)], epochs=epochs, seed=0,
                              **{param: value})
    spec = next(s for s in figures.SWEEP_FIGURES if s.number == 6)
    panels, notes = figures.sweep_panels(aggregate.best_evaluations(hand_frame(rows)), spec)
    assert [list(row[0].curves) for row in panels] == [["KDiffE (epochs=30)", "KDiffE (epochs=50)"]] * 2 + \
        [["KDiffE (epochs=30)"]] * 2
    assert notes == ["figure 6 (M, Synthetic): trials differ in epochs; drawn as separate curves, "
                     "never averaged together"]


def test_close_log_ticks_are_thinned_on_narrow_panels():
    ticks = [2.0, 5.0, 10.0, 20.0, 50.0, 80.0]
    assert figures.sparse_labels(ticks, [f"{t:g}" for t in ticks], 0.25) == ["2", "5", "10", "20", "", "80"]
    assert figures.category_label("KDiffE w/o guidance") == "w/o guidance"
    assert figures.category_label("LightGCN") == "LightGCN"


def test_curves_on_different_numbers_of_seeds_say_how_many():
    from plots.aggregate import labelled_curves

    rows = [{"M": m, "theta2": t2, "seed": s, "test_recall@20": 0.1 + 0.01 * s}
            for t2, seeds in ((1e-5, [0]), (4e-5, [0, 1, 2])) for s in seeds for m in (10, 50)]
    curves, _ = labelled_curves([("KDiffE", pd.DataFrame(rows))], "M", "M", "test_recall@20")
    assert sorted(curves) == ["KDiffE (theta2=1e-05; 1 seed)", "KDiffE (theta2=4e-05; 3 seeds)"]
    assert list(curves["KDiffE (theta2=4e-05; 3 seeds)"]["n"]) == [3, 3]
    same, _ = labelled_curves([("KDiffE", pd.DataFrame([r for r in rows if r["theta2"] == 4e-5]))], "M", "M",
                              "test_recall@20")
    assert list(same) == ["KDiffE"]  # one seed count: nothing to say


def test_an_experiment_that_has_not_ended_is_drawn_only_when_asked(tmp_path, capsys):
    import json

    runs = Runs()
    for name, trial, exits in (("ended", "a", [None, 0]), ("running", "b", [0, None]), ("stopped", "c", [130])):
        write(tmp_path, name, runs.rows(name, trial, "grid", "default", seed=0))
        (tmp_path / name / "experiment.json").write_text(json.dumps({"runs": [{"exit": e} for e in exits]}))
    write(tmp_path, "no-record", runs.rows("no-record", "d", "grid", "default", seed=0))  # a CSV of one's own
    notes: list[str] = []
    drawn = figures.load_results(tmp_path, notes)
    assert set(drawn["experiment"]) == {"ended", "no-record"}  # the last run decides, not the first
    assert sorted(n.split()[0] for n in notes) == ["running", "stopped"]
    assert any("still running, or killed" in n for n in notes) and any("interrupted (exit 130)" in n for n in notes)
    everything = figures.load_results(tmp_path, include_unfinished=True)
    assert set(everything["experiment"]) == {"ended", "running", "stopped", "no-record"}
    for name in ("ended", "no-record"):
        for path in (tmp_path / name).iterdir():
            path.unlink()
        (tmp_path / name).rmdir()
    assert figures.main(["--results", str(tmp_path), "--formats", "png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--unfinished" in err[0]
    assert figures.main(["--results", str(tmp_path), "--formats", "png", "--unfinished"]) == 0
    assert (tmp_path / "figures" / "what_ran.md").exists()
