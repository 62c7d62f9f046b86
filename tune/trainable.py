"""The Ray Tune trainable: one trial = one ``kdiffe.Trainer`` run that owns its results.

Ray stays here; ``kdiffe`` never imports it. A trial's config is a flat dict of Config fields plus
the meta keys of :data:`META_KEYS` (where the trial sits in the experiment and where it writes).

A trial's folder is named by its trial key (:mod:`tune.keys`), carried in its config, so the
same trial finds the same folder on every run. At every evaluation the trial writes its
checkpoint and then its rows into that folder (:class:`tune.store.TrialFiles`), then reports to
Ray; when it ends on its own rules (its epochs, or patience) it says so in ``end.json`` before its
last report. Ray holds no checkpoint of ours: a trial that starts again (``--resume`` after a
crash, or Ray retrying a failed worker) reloads its own last checkpoint, reports the evaluations
it had already made (so schedulers see one consistent history; these carry ``replayed``, so
the console keeps them out of its pace) and trains on from there.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Mapping

from kdiffe.config import Config, from_dict
from kdiffe.results import result_row

from .keys import KEY, config_key
from .remote import SharedCache, staging_folder, trial_files
from .shipped import Bundle, unpack
from .store import FINISHED

#: Keys of a trial config that are not Config fields (``searched``: the names an optuna search moves).
META_KEYS = ("point", "sweep", "kind", "experiment", "results_dir", "results_uri", KEY, "searched", "threads")


def resolve_trial_config(trial_config: Mapping[str, Any]) -> tuple[Config, str]:
    """(Config, sweep) of a trial: flat Config fields, overridden by the grid ``point`` if any."""
    values = {k: v for k, v in trial_config.items() if k not in META_KEYS}
    point = dict(trial_config.get("point") or {})
    point.pop(KEY, None)
    sweep = str(point.pop("sweep", trial_config.get("sweep", "")))
    values.update(point)
    return from_dict(values), sweep


def trial_values(trial_config: Mapping[str, Any]) -> dict[str, Any]:
    """What makes this trial this trial: its grid point (seed included), or the searched values."""
    point = {k: v for k, v in (trial_config.get("point") or {}).items() if k != KEY}
    return {**point, **{name: trial_config[name] for name in trial_config.get("searched") or () if name in trial_config}}


def kdiffe_trainable(trial_config: dict[str, Any], data: Bundle | None = None) -> None:
    """Train one configuration, writing and reporting every evaluation; continues its own checkpoint.

    ``data``: the experiment's dataset files, shipped by the driver (:mod:`tune.shipped`); None reads
    the configured data folder. With storage at a URI the records go there (:mod:`tune.remote`) and
    S comes from, or goes to, the experiment's shared cache."""
    import ray
    import torch
    from ray import tune

    from kdiffe.trainer import Trainer, dataset_for

    config, sweep = resolve_trial_config(trial_config)
    trial_id = config_key(trial_config) or tune.get_context().get_trial_id()
    files = trial_files(trial_config, trial_id)
    identity = dict(experiment=trial_config.get("experiment", ""), trial_id=trial_id, config=config.to_dict(),
                    kind=trial_config.get("kind", "search"), sweep=sweep)
    try:
        data_root = unpack(data) if data else None  # the shipped dataset files, in a folder of this node
        files.begin(ray.get_runtime_context().get_node_id(), result_row(metrics={}, **identity),
                    trial_values(trial_config), str(data_root or config.data_dir or ""))
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(int(trial_config.get("threads") or max(1, int(cpus))))
        run_config, cache = config, None
        if trial_config.get("results_uri"):  # S from and to the experiment's cache, not a node's folder
            cache = SharedCache(trial_config["results_uri"], staging_folder(trial_config["results_uri"], "cache"))
            cache.fetch()
            run_config = config.replace(cache_dir=str(cache.local))
        dataset = dataset_for(run_config.replace(data_dir=str(data_root))) if data_root else None
        trainer = Trainer(run_config, dataset)  # its log goes to the worker log (shown with -v)
        if cache is not None:
            cache.share()
        state = files.state_folder()
        if state is not None:
            trainer.load(state)
        sizes = {"n_users": trainer.dataset.n_users, "n_items": trainer.dataset.n_items}
        history = trainer.history.evaluations
        offset = history[-1].get("wall_time", 0.0) if history else 0.0
        start = time.perf_counter()

        def row(metrics: Mapping[str, Any]) -> dict[str, Any]:
            return result_row(metrics={**metrics, **sizes}, wall_time=metrics.get("wall_time"),
                              n_users=sizes["n_users"], n_items=sizes["n_items"], **identity)

        files.write_rows(row(m) for m in history)  # repairs rows cut off after the checkpoint
        if history and trainer.finished:  # ended before, but its end was never recorded
            files.ended(FINISHED, history[-1].get("epoch"))
        for index, metrics in enumerate(history, start=1):  # what Ray saw before the restart
            tune.report({**metrics, **sizes, "finished": index == len(history) and trainer.finished,
                         "replayed": True})

        def report(metrics: dict[str, Any]) -> None:
            history[-1]["wall_time"] = metrics["wall_time"] = offset + time.perf_counter() - start
            files.save_state(trainer.save)
            files.write_rows(row(m) for m in history)
            if metrics.get("done"):
                files.ended(FINISHED, metrics.get("epoch"))
            tune.report({**metrics, **sizes, "finished": bool(metrics.get("done")), "replayed": False})

        trainer.run(report)
    except Exception as exc:
        files.fail("".join(traceback.format_exception_only(type(exc), exc)))
        raise
    finally:
        files.close()
