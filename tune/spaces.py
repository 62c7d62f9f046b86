"""Search spaces: the paper's one-factor grids (Figures 5-9) and joint ranges for optuna/random."""

from __future__ import annotations

from typing import Any, Iterable

from kdiffe.config import FIELDS, VARIANTS, ConfigError
from kdiffe.results import SWEEP_PARAMS

#: The paper's sweep grids (DESIGN.md section 4).
PAPER_GRIDS: dict[str, tuple[float, ...]] = {
    "M": (30, 50, 80, 110, 130, 150),
    "R": (6, 8, 10, 12, 15, 20),
    "xi": (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    "t": (2, 5, 10, 20, 50, 80),
    "tau": (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    "theta1": (1.0, 1e-1, 1e-2, 1e-3, 1e-4),
    "q": (1, 2, 3, 4, 5, 6),
}

#: Parameters a search may move: the paper's seven and the ablation switch.
SEARCHABLE = SWEEP_PARAMS + ("variant",)


def parse_params(text: str | None) -> tuple[str, ...]:
    """'M,R,variant' -> ("M", "R", "variant"); None -> all seven paper parameters."""
    if not text:
        return SWEEP_PARAMS
    params = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in params if p not in SEARCHABLE]
    if unknown:
        raise ConfigError(f"--params: unknown {', '.join(unknown)}; choose from {', '.join(SEARCHABLE)}")
    return params


def grid_points(params: Iterable[str], base: dict[str, Any]) -> list[dict[str, Any]]:
    """One-factor-at-a-time points: the all-defaults point, then each grid value of each parameter."""
    points: list[dict[str, Any]] = [{"sweep": "default"}]
    for name in params:
        if name == "variant":
            points += [{"sweep": "variant", "variant": v} for v in VARIANTS if v != base.get("variant")]
            continue
        default = base.get(name, FIELDS[name].default)
        points += [{"sweep": name, name: value} for value in PAPER_GRIDS[name] if value != default]
    return points


def joint_space(params: Iterable[str]) -> dict[str, Any]:
    """Ray Tune distributions over the paper's ranges, for optuna and random search."""
    from ray import tune

    ranges = {
        "M": tune.randint(30, 151),
        "R": tune.randint(6, 21),
        "xi": tune.uniform(0.0, 1.0),
        "t": tune.choice(list(PAPER_GRIDS["t"])),
        "tau": tune.uniform(0.1, 1.0),
        "theta1": tune.loguniform(1e-4, 1.0),
        "q": tune.randint(1, 7),
        "variant": tune.choice(["kdiffe", "no_s", "unguided", "no_cl"]),
    }
    return {name: ranges[name] for name in params}


def extreme_values(params: Iterable[str]) -> list[dict[str, Any]]:
    """The corners of the joint ranges, checked before any trial starts."""
    lows = {"M": 30, "R": 6, "xi": 0.0, "t": 2, "tau": 0.1, "theta1": 1e-4, "q": 1, "variant": "kdiffe"}
    highs = {"M": 150, "R": 20, "xi": 1.0, "t": 80, "tau": 1.0, "theta1": 1.0, "q": 6, "variant": "no_cl"}
    return [{p: lows[p] for p in params}, {p: highs[p] for p in params}]
