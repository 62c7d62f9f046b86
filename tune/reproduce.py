"""The paper's whole evaluation as one resumable command, rendered into one folder.

    python tune/reproduce.py --dry-run                       # the plan, its trial-epochs and time
    python tune/reproduce.py                                 # run every part, then draw everything
    python tune/reproduce.py --parts grid --datasets tiktok --seeds 0-2
    python tune/reproduce.py --render-only                   # redraw from what is stored

Each part is one experiment of ``tune/search.py``, ``ablations/run.py`` or ``tune/scalability.py``
(their code, through :func:`tune.cli.main`) in ``<storage>/<part>/``. A part whose last run ended
cleanly is skipped; an interrupted or failed one is resumed (``--resume``). At the end
``plots/figures.py`` draws Figures 5-10 and Tables II-III from every part into ``<storage>/figures``.

Parts (per dataset; datasets without item features run only what needs none):
  grid          one-factor grids of Figures 6-9 (M, R, xi, t, tau, theta1, q), KDiffE, one experiment
                per figure, each on seeds of its own (--grid-design figures: <dataset>-figure9-q,
                -figure6-M-R, -figure7-xi-t, -figure8-tau-theta1, seeds --seeds + 100 x N, at most 60
                epochs with patience; --grid-design shared: <dataset>-grid-q, ... on --seeds, 30
                epochs, the first runs; --grid-params)
  grid-unguided Figure 5's q grid for the unguided variant, on Figure 9's seeds (<dataset>-figure5-unguided)
  ablation      Table III (kdiffe, no_s, unguided, no_cl) and Table II's baselines (lightgcn,
                lightgcn_s), each at its validation-chosen theta2; a dataset without item features
                runs the baselines, and KDiffE on its kg.txt (kg=file) when it has one
  resplit-K     the ablation suite on re-split K of the dataset's interactions (--resplits), one held-out
                interaction per user as in the published TikTok split (parts <dataset>-resplit-K-one-*),
                or about the published shares of each user's interactions (--resplit-holdout shares,
                parts <dataset>-resplit-K-*)
  scalability   Figure 10: seconds per epoch against t on every dataset, against users on Sports
  baselines     Table II's baseline models (every registered model but kdiffe, kdiffe.catalog), each given
                KDiffE's search budget: an optuna search (ASHA) over its own space on --search-datasets
                (part <dataset>-baseline-<model>-search), then the best configuration re-run with the
                ablation seeds on the published split and on the re-splits (<dataset>-baseline-<model>,
                ...-resplit-K-one); other datasets re-run the searched dataset's best configuration;
                multimodal models (needs_features in kdiffe.catalog) skip datasets without item features
  search        beyond the paper: an optuna search (ASHA) of KDiffE over the paper's seven parameters
                plus theta2 and lr, and of LightGCN over theta2 and lr with the same budget
                (--search-trials trials of --ablation-epochs epochs, one seed); then each search's best
                configuration re-run with the ablation seeds (parts <dataset>-search-*-best)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.catalog import MODELS, not_read  # noqa: E402
from kdiffe.config import RESPLIT_HOLDOUTS, check_reads, parse_overrides  # noqa: E402
from kdiffe.data import load_dataset, resolve_data_dir  # noqa: E402
from kdiffe.results import DEFAULT_STORAGE  # noqa: E402
from kdiffe.errors import UserError, report  # noqa: E402
from kdiffe.paper import FIGURES, PAPER_GRIDS, SWEEP_PARAMS, TRAINING_PARAMS  # noqa: E402
from kdiffe.results import BEST_FILE, rerun_name  # noqa: E402
from tune.cli import Parser, seeds_arg  # noqa: E402
from tune.spaces import parse_params  # noqa: E402
from tune.store import experiment_state, storage_path  # noqa: E402
from tune.tracking import TRACKERS  # noqa: E402

PARTS = ("grid", "grid-unguided", "ablation", "resplit", "scalability", "search", "baselines")
#: Options that choose where and how many trials run, passed on to every part's script.
RESOURCE_FLAGS = ("cpus_per_trial", "threads", "gpus_per_trial", "max_concurrent", "address", "tracker", "tracker_uri")
#: The grid part, one experiment per figure: q first (with the unguided q grid it makes Figure 5).
GRID_FIGURES = (9, 6, 7, 8)
GRID_GROUPS = tuple(FIGURES[n].params for n in GRID_FIGURES)
#: --grid-design figures: Figure N's grid (all its points, its default point included) runs seeds
#: --seeds + 100 N, so the figures are independent draws; Figure 5's unguided q grid takes Figure
#: 9's seeds, against which it is paired. "shared": every grid on --seeds (the first runs).
GRID_DESIGNS = ("figures", "shared")
FIGURE_SEED_STRIDE = 100
#: Grid epochs by design: the ablations' budget (patience 10 stops earlier) for "figures", 30 for "shared".
GRID_EPOCHS = {"figures": 60, "shared": 30}
#: What each searched variant may move in the "search" part.
SEARCH_PARAMS = {"kdiffe": SWEEP_PARAMS + TRAINING_PARAMS, "lightgcn": TRAINING_PARAMS}
SEARCH_SEED = 0
#: The plan's searches draw every trial, their first included (tune/search.py's default starts from
#: the defaults since this plan's first searches ran): every model of the comparison is searched
#: the same way, and a resumed part stays as it began.
SEARCH_FIRST = ("--first-trial", "none")
#: Nor do they end with tune/search.py's own re-training: the plan re-runs each best with its ablation seeds.
NO_RETRAIN = ("--retrain-seeds", "none")
#: theta2 chosen on TikTok validation per variant (docs/benchmarks.md, "θ₂ and L2 scope").
#: no_s and unguided keep KDiffE's; no_cl, without the contrastive term that also regularises, takes
#: its own (TikTok seed 0, validation Recall@20: 0.0977 at 1e-5 against 0.0888 at 4e-5, docs/benchmarks.md).
THETA2 = {"kdiffe": 4e-5, "no_s": 4e-5, "unguided": 4e-5, "no_cl": 1e-5, "lightgcn": 2e-5, "lightgcn_s": 1e-5}
#: Seconds per epoch on the 2-core reference machine (docs/benchmarks.md), for --dry-run.
SECONDS_PER_EPOCH = {"kdiffe": 2.2, "no_s": 2.1, "unguided": 2.2, "no_cl": 0.5, "lightgcn": 0.4, "lightgcn_s": 0.3}
SCALE = {"tiktok": 1.0, "baby": 2.0, "sports": 3.7}  #: epoch cost relative to TikTok (interactions)
#: The LightGCN baselines peak later than KDiffE (best validation epochs 28-109 on TikTok,
#: docs/benchmarks.md): their ablation and re-run trials get --baseline-epochs and this patience.
BASELINES = ("lightgcn", "lightgcn_s")
BASELINE_PATIENCE = 20
#: Table II's registered baseline models (kdiffe.catalog), in registry order.
BASELINE_MODELS = tuple(m for m in MODELS if m != "kdiffe")


@dataclass
class Part:
    name: str
    script: str  #: "search" | "ablation" | "scalability"
    argv: list[str]
    trial_epochs: int
    seconds: float  #: estimate on the reference machine, one trial at a time
    after: str = ""  #: a search part whose best configuration completes argv (``--set`` values), read when run
    carried: tuple[str, ...] = ()  #: the parameters taken from that best configuration


def best_settings(storage: Path, search: str, params: tuple[str, ...]) -> list[str]:
    """``--set key=value`` for each of ``params`` (what a finished search part moved), from its best.json."""
    path = storage / search / BEST_FILE
    try:
        best = json.loads(path.read_text())["best"]
        return [x for key in params for x in ("--set", f"{key}={best[key]!r}")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: no best configuration to re-run ({exc.__class__.__name__}: {exc}); "
                        f"run the part {search} first") from None


def capabilities(dataset: str, data_dir: str) -> tuple[bool, bool]:
    """(has item features, has a kg.txt): what parts a dataset supports; loads it once."""
    if dataset == "synthetic":
        return True, False
    ds = load_dataset(dataset, data_dir)
    return bool(ds.features), ds.kg_file is not None


def plan(args: argparse.Namespace) -> list[Part]:
    parts: list[Part] = []
    def run_args(epochs: int, *extra: str, models: tuple[str, ...] = ("kdiffe",)) -> list[str]:
        """The options every part takes, with the --set values its ``models`` read."""
        return ["--data-dir", args.data_dir, "--epochs", str(epochs), *extra,
                *[x for s in args.set if not not_read(models, [s.partition("=")[0].strip()]) for x in ("--set", s)]]

    grid_epochs = args.epochs or GRID_EPOCHS[args.grid_design]
    common = run_args(grid_epochs)  # grids
    long = run_args(args.ablation_epochs)  # ablations and searches

    def grid_name(dataset: str, figure: int, what: str) -> tuple[str, str]:
        """The part name and seeds of one figure's grid under --grid-design."""
        if args.grid_design == "shared":
            return f"{dataset}-grid-{what}", ",".join(map(str, args.seeds))
        offset = FIGURE_SEED_STRIDE * figure
        return f"{dataset}-figure{figure}-{what}", ",".join(str(s + offset) for s in args.seeds)

    def training(variants: list[str]) -> tuple[list[str], int]:
        """Ablation and re-run trials: KDiffE's at most --ablation-epochs, the baselines' longer."""
        if all(v in BASELINES for v in variants):
            return run_args(args.baseline_epochs, "--set", f"patience={BASELINE_PATIENCE}"), args.baseline_epochs
        return long, args.ablation_epochs
    for dataset in args.datasets:
        rich, kg_file = capabilities(dataset, args.data_dir)
        scale = SCALE.get(dataset, 1.0)
        kd = [v for v in ("kdiffe", "no_s", "unguided", "no_cl") if rich]
        if "grid" in args.parts and rich:
            for figure, params in zip(GRID_FIGURES, GRID_GROUPS):
                if not set(params) & set(args.grid_params):
                    continue
                name, grid_seeds = grid_name(dataset, figure, "-".join(params))
                n = (1 + sum(len(PAPER_GRIDS[p]) - 1 for p in params)) * len(args.seeds)
                parts.append(Part(name, "search",
                                  ["--dataset", dataset, "--mode", "grid", "--params", ",".join(params), "--seeds",
                                   grid_seeds, "--set", f"theta2={THETA2['kdiffe']}", *common],
                                  n * grid_epochs, n * grid_epochs * SECONDS_PER_EPOCH["kdiffe"] * scale))
        if "grid-unguided" in args.parts and rich and "q" in args.grid_params:
            n = len(PAPER_GRIDS["q"]) * len(args.seeds)
            name, grid_seeds = grid_name(dataset, 9, "unguided")  # paired with Figure 9's q grid
            if args.grid_design == "figures":
                name = f"{dataset}-figure5-unguided"
            parts.append(Part(name, "search",
                              ["--dataset", dataset, "--mode", "grid", "--params", "q", "--variant", "unguided",
                               "--seeds", grid_seeds, "--set", f"theta2={THETA2['unguided']}", *common],
                              n * grid_epochs, n * grid_epochs * SECONDS_PER_EPOCH["unguided"] * scale))
        groups: dict[tuple[float, bool], list[str]] = {}  # (theta2, baselines?) -> variants, one part each
        for variant in [*kd, "lightgcn", "lightgcn_s"]:
            groups.setdefault((THETA2[variant], variant in BASELINES), []).append(variant)
        one = args.resplit_holdout == "one"
        splits = [("ablation", 0)] * ("ablation" in args.parts) + \
            [(f"resplit-{k}" + "-one" * one, k) for k in args.resplits
             if "resplit" in args.parts and dataset in args.resplit_datasets]
        for label, resplit in splits:
            for (theta2, baselines), variants in groups.items():
                clash = not baselines and (theta2, True) in groups  # a KDiffE group at a baseline's theta2
                suffix = "-" + "-".join(variants) if clash else ""
                run, epochs = training(variants)
                n = len(variants) * len(args.ablation_seeds)
                cost = sum(SECONDS_PER_EPOCH[v] for v in variants) * len(args.ablation_seeds) * epochs * scale
                extra = resplit_argv(resplit, one)
                parts.append(Part(f"{dataset}-{label}-theta2-{theta2:g}{suffix}", "ablation",
                                  ["--dataset", dataset, "--variants", ",".join(variants), "--seeds",
                                   ",".join(map(str, args.ablation_seeds)), "--set", f"theta2={theta2}", *extra,
                                   *run], n * epochs, cost))
            if not rich and kg_file:  # the one KDiffE that can run: on kg.txt
                n = len(args.ablation_seeds)
                parts.append(Part(f"{dataset}-{label}-kg-file", "ablation",
                                  ["--dataset", dataset, "--variants", "kdiffe", "--seeds",
                                   ",".join(map(str, args.ablation_seeds)), "--set", f"theta2={THETA2['kdiffe']}",
                                   "--set", "kg=file", *extra, *long],
                                  n * args.ablation_epochs, n * args.ablation_epochs * SECONDS_PER_EPOCH["kdiffe"] * scale))
        if "search" in args.parts and dataset in args.search_datasets:
            seeds_best = ",".join(map(str, args.ablation_seeds))
            for variant in [v for v in SEARCH_PARAMS if rich or v == "lightgcn"]:
                name = f"{dataset}-search-{variant}"
                n = args.search_trials * args.ablation_epochs  # the budget; ASHA spends less
                cost = n * SECONDS_PER_EPOCH[variant] * scale
                parts.append(Part(name, "search", ["--dataset", dataset, "--mode", "optuna", "--params", ",".join(SEARCH_PARAMS[variant]),
                                                   "--num-samples", str(args.search_trials), *SEARCH_FIRST, *NO_RETRAIN, "--seeds", str(SEARCH_SEED),
                                                   *(["--variant", variant] if variant != "kdiffe" else []), *long],
                                  n, cost))
                run, epochs = training([variant])
                n = len(args.ablation_seeds) * epochs
                parts.append(Part(rerun_name(name), "ablation", ["--dataset", dataset, "--variants", variant, "--seeds",
                                                              seeds_best, *run],
                                  n, n * SECONDS_PER_EPOCH[variant] * scale, after=name,
                                  carried=SEARCH_PARAMS[variant]))
        if "baselines" in args.parts:
            parts += baseline_parts(args, dataset, rich, scale, run_args)
    if "scalability" in args.parts:
        steps = len(PAPER_GRIDS["t"])
        n = steps * len(args.datasets) + (5 if "sports" in args.datasets else 0)
        parts.append(Part("scalability", "scalability", ["--dataset", *args.datasets, "--data-dir", args.data_dir,
                                                         "--epochs", "3"], n * 3,
                          sum(3 * steps * SECONDS_PER_EPOCH["kdiffe"] * SCALE.get(d, 1) for d in args.datasets)))
    return parts


def option(argv: list[str], flag: str) -> str | None:
    """The value following ``flag`` in ``argv``, or None."""
    return argv[argv.index(flag) + 1] if flag in argv else None


def refuse_searched_sets(parts: list[Part], sets: list[str]) -> None:
    """A --set value that a grid or search part of the plan moves would end that part at its start,
    hours into the plan (tune/search.py refuses it): refuse it before anything runs."""
    keys = parse_overrides(sets)
    for part in parts:
        if part.script != "search":
            continue
        searched = parse_params(option(part.argv, "--params"), option(part.argv, "--model") or "kdiffe")
        clash = [key for key in keys if key in searched]
        if clash:
            raise UserError(f"--set {clash[0]}=...: part {part.name} searches {clash[0]}; drop the --set, or leave "
                            "that part out (--parts, --grid-params)")


def refuse_missing_sources(storage: Storage, parts: list[Part], states: dict[str, str]) -> None:
    """A re-run part takes its settings from a search part that this plan runs or that is stored
    finished; without one it would stop the plan when reached: refuse it before anything runs.
    ``states``: each planned part's state (state())."""
    for part in parts:
        if part.after and part.after not in states and states[part.name] != "done" \
                and experiment_state(storage.pulled(part.after)) != "done":
            dataset = part.after.split("-baseline-")[0]
            raise UserError(f"part {part.name} re-runs the best configuration of {part.after}, which is neither "
                            f"in {storage.text} nor in this plan: add {dataset} to --datasets")


def resplit_argv(resplit: int, one: bool) -> list[str]:
    """The ``--set`` options of re-split ``resplit`` (none for 0, the published split); ``one``: one
    held-out interaction per user."""
    return ["--set", f"resplit={resplit}", *["--set", "resplit_holdout=one"] * one] if resplit else []


def baseline_parts(args: argparse.Namespace, dataset: str, rich: bool, scale: float, run_args: Any) -> list[Part]:
    """Table II's baselines on ``dataset``, each with KDiffE's search budget: an optuna search (ASHA)
    of the model over its own space (kdiffe.catalog) on the search datasets, then its best
    configuration re-run with the ablation seeds on the published split and on the re-splits.
    A dataset that is not searched re-runs the best configuration of the first --search-datasets,
    whether that search is in this plan or stored (refuse_missing_sources). Multimodal models skip
    a dataset without features."""
    parts: list[Part] = []
    searched = list(args.search_datasets)  # in this plan or stored by an earlier one
    splits = [("", 0)] + [(f"-resplit-{k}" + "-one" * (args.resplit_holdout == "one"), k) for k in args.resplits
                          if dataset in args.resplit_datasets]
    for model in args.baseline_models:
        if MODELS[model].needs_features and not rich:
            continue
        epoch = MODELS[model].epoch_seconds * scale
        rerun = run_args(args.baseline_epochs, "--set", f"patience={BASELINE_PATIENCE}", models=(model,))
        search = f"{dataset}-baseline-{model}-search"
        if dataset in args.search_datasets:
            n = args.search_trials * args.ablation_epochs  # the budget; ASHA spends less
            parts.append(Part(search, "search", ["--dataset", dataset, "--mode", "optuna", "--model", model,
                                                 "--num-samples", str(args.search_trials), *SEARCH_FIRST, *NO_RETRAIN, "--seeds", str(SEARCH_SEED),
                                                 *run_args(args.ablation_epochs, models=(model,))], n, n * epoch))
        source = search if dataset in searched else f"{searched[0]}-baseline-{model}-search"
        for label, resplit in splits:
            extra = resplit_argv(resplit, args.resplit_holdout == "one")
            n = len(args.ablation_seeds) * args.baseline_epochs
            parts.append(Part(f"{dataset}-baseline-{model}{label}", "ablation",
                              ["--dataset", dataset, "--variants", "none", "--models", model, "--seeds",
                               ",".join(map(str, args.ablation_seeds)), *extra, *rerun], n, n * epoch,
                              after=source, carried=MODELS[model].search if source else ()))
    return parts


class Storage:
    """The parts' storage: a local folder, or a URI (tune.remote) whose experiments are mirrored
    locally before they are read."""

    def __init__(self, text: str) -> None:
        from kdiffe.storage import Remote, is_uri, mirror_root

        self.remote = Remote(text) if is_uri(text) else None
        if self.remote is not None:
            self.remote.check_writable()
        self.text = self.remote.uri if self.remote else str(storage_path(text))
        self.local = mirror_root(self.remote.uri) if self.remote else Path(self.text)

    def pulled(self, name: str) -> Path:
        """The local folder of experiment ``name``, refreshed from the store first."""
        from tune.remote import Mirror

        if self.remote is not None:
            Mirror(self.remote, name, self.local / name).pull()
        return self.local / name


def state(storage: Storage, part: Part) -> str:
    """"new", "done" (its last run exited 0) or "resume" (tune.store.experiment_state)."""
    return experiment_state(storage.pulled(part.name))


def resource_argv(args: argparse.Namespace, part: Part) -> list[str]:
    """The resource options given to this command, as the part's script takes them; the scalability
    part, which measures seconds per epoch, runs one trial at a time whatever --max-concurrent says."""
    flags = [f for f in RESOURCE_FLAGS if not (part.script == "scalability" and f == "max_concurrent")]
    return [x for f in flags if getattr(args, f) is not None for x in (f"--{f.replace('_', '-')}", getattr(args, f))]


def run_part(storage: Storage, part: Part, resources: list[str]) -> int:
    from importlib import import_module

    from tune.cli import main

    module = {"search": "tune.search", "ablation": "ablations.run", "scalability": "tune.scalability"}[part.script]
    script = import_module(module).SCRIPT
    where = ["--storage", storage.text, "--name", part.name]
    if state(storage, part) == "resume":
        after = list(NO_RETRAIN) if part.script == "search" else []  # parts that began before it existed too
        return main(script, [*where, "--resume", *after, *resources])
    settings = best_settings(storage.local, part.after, part.carried) if part.after else []
    argv = [*part.argv, *settings, *where, *resources]
    return main(script, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tune/reproduce.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["tiktok", "baby", "sports"])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--grid-params", default=",".join(SWEEP_PARAMS),
                        help="parameters whose grids (one experiment per figure) the grid part runs "
                             "(default all seven; q also gates grid-unguided)")
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-2"), help="seeds of the grids (default 0-2)")
    parser.add_argument("--ablation-seeds", type=seeds_arg, default=seeds_arg("0-4"),
                        help="seeds of the ablation suites (default 0-4)")
    parser.add_argument("--resplits", type=seeds_arg, default=[1, 2], help="re-splits of the ablation suite (default 1,2)")
    parser.add_argument("--resplit-holdout", choices=RESPLIT_HOLDOUTS, default="one",
                        help="how a re-split holds out: one interaction per user, like the published TikTok split "
                             "(default), or about the published shares of each user's interactions")
    parser.add_argument("--search-datasets", nargs="+", default=["tiktok"],
                        help="datasets searched in the search part (default tiktok)")
    parser.add_argument("--resplit-datasets", nargs="+", default=["tiktok"], help="datasets re-split (default tiktok)")
    parser.add_argument("--grid-design", choices=GRID_DESIGNS, default="figures",
                        help="figures (default): each figure's grid on seeds of its own (--seeds + 100 x the "
                             "figure's number), parts <dataset>-figureN-...; shared: every grid on --seeds, "
                             "parts <dataset>-grid-... (the first runs, 30 epochs)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="most epochs of grid trials (default 60 for --grid-design figures, the ablations' "
                             "budget, which patience stops earlier; 30 for shared)")
    parser.add_argument("--ablation-epochs", type=int, default=60,
                        help="most epochs of ablation, re-split, search and re-run trials (default 60; they stop "
                             "earlier after `patience` evaluations without a better validation score)")
    parser.add_argument("--baseline-epochs", type=int, default=150,
                        help=f"most epochs of LightGCN and LightGCN + S ablation and re-run trials (default 150, "
                             f"patience {BASELINE_PATIENCE})")
    parser.add_argument("--baseline-models", default=",".join(BASELINE_MODELS),
                        help=f"models of the baselines part (default {','.join(BASELINE_MODELS)})")
    parser.add_argument("--search-trials", type=int, default=24,
                        help="trials of each optuna search in the search part (default 24)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Config value for every trial")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--storage", default=DEFAULT_STORAGE,
                        help=f"folder of every part and of figures/ (default ./{DEFAULT_STORAGE}; the committed "
                             "evaluation is docs/results: pass --storage docs/results to extend it)")
    parser.add_argument("--cpus-per-trial", default=None)
    parser.add_argument("--threads", default=None, help="torch CPU threads of each trial (default: its CPUs)")
    parser.add_argument("--gpus-per-trial", default=None)
    parser.add_argument("--max-concurrent", default=None,
                        help="trials at a time in every part but scalability, which times one trial at a time")
    parser.add_argument("--address", default=None)
    parser.add_argument("--tracker", choices=list(TRACKERS), default=None,
                        help="log every part's trials there too (tune/search.py --tracker)")
    parser.add_argument("--tracker-uri", default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its cost; run nothing")
    parser.add_argument("--render-only", action="store_true", help="draw the figures and tables from what is stored")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        args.grid_params = [p.strip() for p in args.grid_params.split(",") if p.strip()]
        if not set(args.grid_params) <= set(SWEEP_PARAMS):
            raise UserError(f"--grid-params {','.join(args.grid_params)}: choose from {', '.join(SWEEP_PARAMS)}")
        args.baseline_models = [m.strip() for m in args.baseline_models.split(",") if m.strip()]
        if not args.baseline_models or not set(args.baseline_models) <= set(BASELINE_MODELS):
            raise UserError(f"--baseline-models {','.join(args.baseline_models)}: choose from "
                            f"{', '.join(BASELINE_MODELS)}")
        unknown = [p for p in args.parts if p not in PARTS]
        if unknown:
            raise UserError(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
        # a --set value goes to the parts whose models read it; one that no model of the plan reads is refused
        models = ["kdiffe"] * bool(set(args.parts) - {"baselines"}) + args.baseline_models * ("baselines" in args.parts)
        check_reads(models, parse_overrides(args.set))
        args.data_dir = str(resolve_data_dir(args.data_dir))
        storage = Storage(args.storage)
        parts = [] if args.render_only else plan(args)
        refuse_searched_sets(parts, args.set)
        states = {part.name: state(storage, part) for part in parts}
        refuse_missing_sources(storage, parts, states)
    except UserError as exc:
        return report(exc)
    total_epochs, total_seconds = 0, 0.0
    for part in parts:
        status = states[part.name]
        total_epochs += part.trial_epochs * (status != "done")
        total_seconds += part.seconds * (status != "done")
        print(f"{part.name:<34} {status:<6} {part.trial_epochs:>6} trial-epochs  <={part.seconds / 3600:5.1f} h  "
              f"python {'ablations/run.py' if part.script == 'ablation' else f'tune/{part.script}.py'} "
              f"{' '.join(part.argv)}" + (f" + the best settings of {part.after}" if part.after else ""))
    if parts:
        print(f"to run: at most {total_epochs} trial-epochs, at most about {total_seconds / 3600:.1f} h one trial at a "
              f"time on the 2-core reference machine ({total_seconds / 3600 / 1.24:.1f} h two at a time); every trial "
              "counted to its last epoch, so patience and ASHA end most parts in a fraction of it")
    if args.dry_run:
        return 0
    for part in parts:
        if state(storage, part) == "done":
            continue
        print(f"== {part.name}", flush=True)
        try:
            code = run_part(storage, part, resource_argv(args, part))
        except UserError as exc:
            code = report(exc)
        if code != 0:
            print(f"{part.name} ended with exit code {code}; run the same command again to resume it", flush=True)
            return code
    from plots.figures import load_results, render_all
    from kdiffe.storage import pull_results

    try:
        results = pull_results(storage.text) if storage.remote else storage.local
        done = render_all(load_results(results), results / "figures", ("png",), results, args.data_dir)
        if storage.remote is not None:
            storage.remote.upload(results / "figures", "figures")
    except UserError as exc:
        return report(exc)
    for path in done.written:
        print(f"wrote {path}")
    for note in done.notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
