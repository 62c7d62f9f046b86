"""The ablation suite (ablations/run.py) on tiny synthetic data: one Ray experiment, Table III."""

import pandas as pd
import pytest

from kdiffe.catalog import MODELS
from kdiffe.results import COLUMNS
from test_tune import TINY, one_line_error, ray_session  # noqa: F401  (shared session fixture)


def test_ablation_suite_writes_table_iii(ray_session, tmp_path, capsys):  # noqa: F811
    from ablations.run import main

    assert main([*TINY, "--seeds", "0-1", "--epochs", "1", "--models", "sgl", "--storage", str(tmp_path),
                 "--name", "abl"]) == 0
    folder = tmp_path / "abl"
    frame = pd.read_csv(folder / "results.csv")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["trial_id"].nunique() == 12 and set(frame["kind"]) == {"ablation"}
    assert sorted(set(zip(frame["variant"], frame["seed"]))) == sorted(
        (v, s) for v in ("kdiffe", "no_s", "unguided", "no_cl", "lightgcn", "sgl") for s in (0, 1))
    sgl = frame[frame["variant"] == "sgl"]
    assert set(sgl["model"]) == {"sgl"} and set(sgl["layers"]) == {3} and set(sgl["tau"]) == {0.2}  # its own defaults
    assert set(frame[frame["variant"] != "sgl"]["model"]) == {"kdiffe"}
    table = pd.read_csv(folder / "table_iii.csv")  # Table III: the kdiffe model's variants
    assert list(table["variant"]) == ["kdiffe", "no_s", "unguided", "no_cl", "lightgcn"]
    models = pd.read_csv(folder / "table_ii.csv")  # Table II: the baseline model beside them
    assert list(models["variant"]) == ["kdiffe", "no_s", "unguided", "no_cl", "lightgcn (KDiffE's form)", "sgl"]
    assert (models["runs"] == 2).all()
    assert models["p vs kdiffe"].notna().tolist() == [False] + [True] * 5
    assert (table["seeds"] == 2).all() and table["test_recall@20 mean"].between(0, 1).all()
    assert table.loc[table["variant"] == "kdiffe", "test_recall@20 p"].isna().all()
    md = (folder / "table_iii.md").read_text()
    assert "### Table III: synthetic" in md and "± " in md and "lightgcn" in md
    out = capsys.readouterr().out
    assert "12 trials, 0 failed" in out and "Table III" in out and "Table II:" in out


@pytest.mark.parametrize("args,needle", [
    (["--set", "tau=0"], "tau=0.0"),
    (["--variants", "kdiffe,nope"], "unknown variant nope"),
    (["--variants", "none"], "--variants none: nothing to run; name baseline models with --models"),
    (["--models", "kdiffe"], "unknown baseline model kdiffe; choose from " + ", ".join(m for m in MODELS if m != "kdiffe")),
    (["--set", "model=sgl"], "use --models"),
    (["--seeds", ","], "expected seeds >= 0"),
    (["--seeds", "x"], "expected seeds such as"),
    (["--set", "variant=no_s"], "use --variants"),
    (["--dataset", "synthetic", "atlantis"], "unknown dataset 'atlantis'"),
    (["--variants", "none", "--models", "sgl,lightgcn"], "none of the models of this run (sgl, lightgcn) uses M"),  # TINY's
])
def test_invalid_ablation_arguments_fail_with_one_line(tmp_path, capsys, args, needle):
    from ablations.run import main

    argv = [*TINY, *args, "--storage", str(tmp_path)]
    if args[0] == "--dataset":
        argv = [*args, *TINY[2:], "--storage", str(tmp_path)]
    assert needle in one_line_error(capsys, main, argv)
    assert not any(tmp_path.iterdir())
