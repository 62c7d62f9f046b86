"""kdiffe/paper.py: the paper's facts agree with each other, with Config, and are the only copy."""

import ast
import math
from pathlib import Path

import pytest

from kdiffe import paper, results
from kdiffe.config import FIELDS, VARIANTS, Config, from_dict

ROOT = Path(__file__).resolve().parents[1]
GRIDS = {**paper.PAPER_GRIDS, **paper.TRAINING_GRIDS}


def test_paper_defaults_are_config_defaults():
    config = Config()
    for name, value in paper.PAPER_DEFAULTS.items():
        assert getattr(config, name) == value, name
    assert (config.M, config.R, config.xi, config.t, config.tau, config.theta1, config.q) == (50, 12, 0.7, 10, 0.5,
                                                                                             1e-2, 1)
    assert config.metric == f"recall@{paper.TOP_K}"


@pytest.mark.parametrize("name", paper.SWEEP_PARAMS + paper.TRAINING_PARAMS)
def test_grids_contain_the_config_default(name):
    assert set(paper.PAPER_GRIDS) == set(paper.SWEEP_PARAMS)
    assert any(math.isclose(v, FIELDS[name].default) for v in GRIDS[name])


@pytest.mark.parametrize("name", paper.SWEEP_PARAMS + paper.TRAINING_PARAMS)
def test_ranges_contain_the_grids(name):
    kind, *spec = paper.JOINT_RANGES[name]
    low, high = paper.range_ends(name)
    grid = GRIDS[name]
    if kind == "choice":
        assert set(grid) <= set(spec[0])
    else:
        assert kind in ("int", "uniform", "loguniform") and low < high
        assert low <= min(grid) and max(grid) <= high
        assert kind != "int" or all(float(v).is_integer() for v in grid)
        assert kind != "loguniform" or low > 0


def test_range_corners_are_valid_configs():
    assert set(paper.JOINT_RANGES) == set(paper.SWEEP_PARAMS) | {"variant"} | set(paper.TRAINING_PARAMS)
    assert set(paper.TRAINING_GRIDS) == set(paper.TRAINING_PARAMS)
    assert set(paper.ABLATION_VARIANTS) <= set(VARIANTS)
    for end in (0, 1):
        from_dict({name: paper.range_ends(name)[end] for name in paper.JOINT_RANGES})


def test_tune_reads_the_grids_and_ranges_from_the_core():
    spaces = pytest.importorskip("tune.spaces")
    assert spaces.PAPER_GRIDS is paper.PAPER_GRIDS and spaces.SWEEP_PARAMS is paper.SWEEP_PARAMS
    assert results.SWEEP_PARAMS is paper.SWEEP_PARAMS
    lows, highs = spaces.extreme_values(spaces.SEARCHABLE)
    assert lows == {"M": 30, "R": 6, "xi": 0.0, "t": 2, "tau": 0.1, "theta1": 1e-4, "q": 1, "variant": "kdiffe",
                    "theta2": 1e-6, "lr": 1e-4}
    assert highs == {"M": 150, "R": 20, "xi": 1.0, "t": 80, "tau": 1.0, "theta1": 1.0, "q": 6, "variant": "no_cl",
                     "theta2": 1e-3, "lr": 1e-2}


def test_names_and_figures_are_consistent():
    assert set(paper.PARAM_LABELS) == set(paper.SWEEP_PARAMS) | set(paper.TRAINING_PARAMS) | \
        set(paper.MODEL_SEARCH_PARAMS)  # every searched parameter has its axis label
    assert set(paper.VARIANT_NAMES) == set(VARIANTS) and paper.VARIANT_ORDER[0] == "kdiffe"
    assert set(paper.PAPER_VARIANT_SYMBOLS) == set(paper.ABLATION_VARIANTS)
    assert set(paper.DATASET_NAMES) == set(paper.DATASETS) == set(paper.PAPER_TABLE_II)
    assert sorted(paper.FIGURES) == [5, 6, 7, 8, 9, 10]
    swept = {p for n in range(5, 10) for p in paper.FIGURES[n].params}
    assert swept == set(paper.SWEEP_PARAMS)
    assert paper.FIGURES[5].variants == ("kdiffe", "unguided")
    assert paper.FIGURES[10].params == ("t", "users") and paper.SCALABILITY_DATASET in paper.DATASETS
    assert paper.PAPER_TABLE_III["tiktok"]["kdiffe"] == paper.PAPER_TABLE_II["tiktok"]
    assert set(paper.PAPER_TABLE_III["tiktok"]) == set(paper.ABLATION_VARIANTS)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "plots").glob("*.py")), ids=lambda p: p.name)
def test_plots_never_import_tune(path):
    bad = {m for m in imported_modules(path) if m == "tune" or m.startswith("tune.") or m.startswith("ray")}
    assert not bad, f"{path.name} imports {bad}: plots/ reads only kdiffe and the CSV schema"


@pytest.mark.parametrize("path", sorted((ROOT / "kdiffe").glob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_ray_tune_or_plots(path):
    bad = {m for m in imported_modules(path) if m.split(".")[0] in ("ray", "tune", "plots")}
    assert not bad, f"{path.name} imports {bad}"


def test_paper_facts_are_defined_once():
    """No other module assigns the paper's constants again (re-imports are fine)."""
    names = {"PAPER_GRIDS", "SWEEP_PARAMS", "PAPER_TABLE_II", "PAPER_TABLE_III", "PARAM_LABELS", "VARIANT_NAMES",
             "VARIANT_ORDER", "JOINT_RANGES", "PAPER_DEFAULTS"}
    for path in [*(ROOT / "kdiffe").glob("*.py"), *(ROOT / "plots").glob("*.py"), ROOT / "tune" / "spaces.py"]:
        if path.name == "paper.py":
            continue
        tree = ast.parse(path.read_text())
        assigned = {t.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)}
        assert not assigned & names, f"{path.relative_to(ROOT)} redefines {assigned & names}"
