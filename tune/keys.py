"""Trial keys: each trial's name, derived from what makes it that trial, the same on every run.

A planned experiment (a grid, a random search, the ablation suite, the scalability runs) is a
list of cells: the values that move from trial to trial (a grid point, a seed, a dataset). A
trial's key is a hash of its cell, with ``-2``, ``-3``, ... for a cell planned more than once, so
``--resume`` matches each planned cell to its own folder (``trials/<key>/``) without Ray's trial
ids. An optuna search learns its cells as it goes; :class:`KeyBook` names them the same way as
they are suggested and gives a trial that is resumed its old key back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

KEY = "trial_key"  #: the trial config entry (a grid point's entry, or top level) holding the key


def config_key(config: Mapping[str, Any]) -> str | None:
    """The trial key a trial config carries: top level (optuna), or in its grid ``point``."""
    return config.get(KEY) or (config.get("point") or {}).get(KEY)


def digest(values: Mapping[str, Any]) -> str:
    """10 hex digits of SHA-256 over the canonical JSON of ``values`` (sorted keys)."""
    text = json.dumps({k: v for k, v in values.items() if k != KEY}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _named(base: str, ordinal: int) -> str:
    return base if ordinal == 1 else f"{base}-{ordinal}"


def keyed(cells: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each cell with its key under :data:`KEY`; the n-th repeat of a cell gets ``-n``."""
    seen: dict[str, int] = {}
    out = []
    for cell in cells:
        base = digest(cell)
        seen[base] = seen.get(base, 0) + 1
        out.append({**cell, KEY: _named(base, seen[base])})
    return out


class KeyBook:
    """Keys for cells met one by one (optuna's suggestions).

    ``taken``: keys of trials this experiment already holds; ``resumable``: key -> values of the
    trials to continue (their cells are suggested again, first): the first suggestion of such a
    cell gets that key back; every other one the next free key of its cell.
    """

    def __init__(self, taken: Iterable[str] = (), resumable: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.taken = set(taken)
        self.waiting: dict[str, list[str]] = {}
        for key, values in (resumable or {}).items():
            self.waiting.setdefault(digest(values), []).append(key)

    def key(self, values: Mapping[str, Any]) -> str:
        base = digest(values)
        if self.waiting.get(base):
            key = self.waiting[base].pop(0)
        else:
            ordinal = 1
            while _named(base, ordinal) in self.taken:
                ordinal += 1
            key = _named(base, ordinal)
        self.taken.add(key)
        return key
