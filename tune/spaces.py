"""Search spaces: the paper's one-factor grids (Figures 5-9) and joint ranges for optuna/random."""

from __future__ import annotations

from typing import Any, Iterable

from kdiffe.config import FIELDS, VARIANTS, ConfigError
from kdiffe.catalog import MODELS, published_defaults, search_grids, search_ranges
from kdiffe.paper import JOINT_RANGES, PAPER_GRIDS, SWEEP_PARAMS, TRAINING_GRIDS, TRAINING_PARAMS  # noqa: F401
from kdiffe.paper import range_ends as paper_range_ends

#: Parameters a search may move: the paper's seven, the ablation switch, and (only when named)
#: the training parameters theta2 and lr.
SEARCHABLE = SWEEP_PARAMS + ("variant",) + TRAINING_PARAMS
GRIDS = {**PAPER_GRIDS, **TRAINING_GRIDS}


def searchable(model: str = "kdiffe") -> tuple[str, ...]:
    """What a search of ``model`` may move: KDiffE's paper parameters, its variant and the training
    parameters; another model's own search space (its kdiffe.catalog entry)."""
    return SEARCHABLE if model == "kdiffe" else MODELS[model].search


def parse_params(text: str | None, model: str = "kdiffe") -> tuple[str, ...]:
    """'M,R,variant' -> ("M", "R", "variant"); None -> the model's default search space (KDiffE's:
    the seven paper parameters)."""
    allowed = searchable(model)
    if not text:
        return SWEEP_PARAMS if model == "kdiffe" else allowed
    params = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in params if p not in allowed]
    if unknown:
        raise ConfigError(f"--params: unknown {', '.join(unknown)} for model {model}; choose from "
                          f"{', '.join(allowed)}")
    return params


def ranges(model: str = "kdiffe") -> dict[str, tuple]:
    """Search ranges of ``model``: kdiffe.paper.JOINT_RANGES, with the model's own over them."""
    return dict(search_ranges(model, JOINT_RANGES))


def range_ends(name: str, model: str = "kdiffe") -> tuple[Any, Any]:
    """The two ends of ``name``'s range for ``model``: (low, high), or a choice's first and last value."""
    return paper_range_ends(name, ranges(model))


def in_range(name: str, value: Any, model: str = "kdiffe") -> bool:
    """Whether ``value`` lies in ``name``'s search range for ``model``."""
    kind, *spec = ranges(model)[name]
    if kind == "choice":
        return value in spec[0]
    try:
        return spec[0] <= value <= spec[1] and (kind != "int" or float(value).is_integer())
    except TypeError:
        return False


def default_point(params: Iterable[str], base: dict[str, Any], model: str = "kdiffe") -> dict[str, Any] | None:
    """The searched parameters at the configuration every trial starts from (the model's published
    defaults, under --from and --set): a search's first trial; None when one lies outside its range."""
    from kdiffe.config import from_dict

    values = from_dict({k: v for k, v in base.items() if not k.startswith("_")}).to_dict()
    point = {p: values[p] for p in params}
    return point if all(in_range(p, v, model) for p, v in point.items()) else None


def grid_points(params: Iterable[str], base: dict[str, Any]) -> list[dict[str, Any]]:
    """One-factor-at-a-time points: the all-defaults point, then each grid value of each parameter."""
    points: list[dict[str, Any]] = [{"sweep": "default"}]
    model = base.get("model", FIELDS["model"].default)
    published, grids = published_defaults(model), search_grids(model, GRIDS)
    for name in params:
        if name == "variant":
            points += [{"sweep": "variant", "variant": v} for v in VARIANTS if v != base.get("variant")]
            continue
        default = base.get(name, published.get(name, FIELDS[name].default))
        points += [{"sweep": name, name: value} for value in grids[name] if value != default]
    return points


def joint_space(params: Iterable[str], model: str = "kdiffe") -> dict[str, Any]:
    """Ray Tune distributions over ``model``'s ranges (:func:`ranges`), for the optuna search."""
    from ray import tune

    def distribution(kind: str, *spec: Any) -> Any:
        if kind == "int":
            return tune.randint(spec[0], spec[1] + 1)  # randint excludes its upper end
        if kind == "uniform":
            return tune.uniform(spec[0], spec[1])
        if kind == "loguniform":
            return tune.loguniform(spec[0], spec[1])
        return tune.choice(list(spec[0]))

    table = ranges(model)
    return {name: distribution(*table[name]) for name in params}


def sample_points(params: Iterable[str], n: int, seed: int, model: str = "kdiffe") -> list[dict[str, Any]]:
    """``n`` points drawn from ``model``'s ranges (:func:`ranges`) with numpy's
    generator seeded by ``seed``: the random search's trials, the same on every run and resume.
    int: uniform over low..high inclusive; uniform; loguniform (uniform in log); choice."""
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    params, table = tuple(params), ranges(model)
    points = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for name in params:
            kind, *spec = table[name]
            if kind == "int":
                point[name] = int(rng.integers(spec[0], spec[1] + 1))
            elif kind == "uniform":
                point[name] = float(rng.uniform(spec[0], spec[1]))
            elif kind == "loguniform":
                point[name] = float(math.exp(rng.uniform(math.log(spec[0]), math.log(spec[1]))))
            else:
                choices = list(spec[0])
                value = choices[int(rng.integers(len(choices)))]
                point[name] = value.item() if hasattr(value, "item") else value
        points.append(point)
    return points


def extreme_values(params: Iterable[str], model: str = "kdiffe") -> list[dict[str, Any]]:
    """The corners of ``model``'s ranges, checked before any trial starts."""
    params = tuple(params)
    return [{p: range_ends(p, model)[0] for p in params}, {p: range_ends(p, model)[1] for p in params}]
