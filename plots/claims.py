"""A verdict on each claim of the paper's evaluation (Section VI), from stored results.

Every measurement is a test metric at a trial's best *validation* evaluation
(:func:`kdiffe.results.best_rows`); the paper's numbers and grids come from :mod:`kdiffe.paper`.
Each claim names where the paper makes it (``source``), the form we test (``tested as``) and
gets one of four verdicts by the rules of :mod:`plots.verdicts` (holds, not confirmed,
contradicted, cannot be tested here):

=====================  ==========================================================================
claim                  rule (plots.verdicts)
=====================  ==========================================================================
Table II number        KDiffE reaches the paper's Recall@20 / NDCG@20: the level rule (our 95 %
                       CI over seeds at least 95 % of the paper's number: holds; wholly below it:
                       contradicted)
Tables II-III order    KDiffE above each ablation (the paper's drop beside ours), LightGCN and
                       every baseline model that ran, per data split: the difference rule
                       (paired over seeds, 95 % CI of the drop above 0: holds; below: contradicted)
optimum (Figs 6-9)     the paper's default is each sweep's best value (Section VI-A sets the
                       defaults from these sweeps): the optimum rule (two-way point x seed
                       error; above every other point, one-sided 5 % each: holds; some point
                       above it, Holm: contradicted); the omnibus F test beside it
guidance (Fig. 5)      guided above unguided at every q: the every-point rule
scalability (Fig. 10)  seconds per epoch grow linearly with t (per dataset) and with users
                       (Sports): the scaling rule (log-log slope CI holds 1 and stays below
                       1.2); on a dataset without item features t changes nothing the model
                       computes, so that claim cannot be tested there
=====================  ==========================================================================
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from kdiffe import paper
from kdiffe.files import write_atomic
from kdiffe.results import best_rows, is_rerun
from plots import aggregate, tables, verdicts
from plots.verdicts import CONTRADICTED, HOLDS, NOT_CONFIRMED, UNTESTABLE

ALPHA = verdicts.ALPHA
COLUMNS = ("claim", "source", "tested as", "paper", "ours", "verdict", "why")


def claims(frame: pd.DataFrame) -> pd.DataFrame:
    """Every claim with our measurement and verdict (columns :data:`COLUMNS`), from a tidy results
    frame as :func:`plots.figures.load_results` returns it."""
    frame = frame[~frame["experiment"].map(is_rerun).astype(bool)]
    best = best_rows(frame)
    rows = number_claims(best) + ordering_claims(best) + pooled_claims(best) + optimum_claims(best) + \
        guidance_claims(best) + scalability_claims(frame)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(claim: str, paper_value: str, ours: str, verdict: str, why: str = "", *, source: str = "",
         tested: str = "") -> dict[str, str]:
    return dict(zip(COLUMNS, (claim, source, tested, paper_value, ours, verdict, why)))


def _ablation(best: pd.DataFrame) -> pd.DataFrame:
    rows = best[best["kind"] == "ablation"]
    return rows.assign(data=tables.data_label(rows))


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{tables.mean_std_text(mean, std)} ({n} seed{'s' * (n != 1)})"


def _ci(low: float, high: float) -> str:
    return f"95 % CI [{low:+.4f}, {high:+.4f}]"


def _kg_note(kdiffe_rows: pd.DataFrame) -> str:
    """'our KDiffE here uses kg=file, ...' when KDiffE ran on another KG than the concept KG, else ''."""
    kg = tables.other_kg(kdiffe_rows)
    return f"our KDiffE here uses kg={kg}, not a KG built from item features" if kg else ""


def _reasons(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def number_claims(best: pd.DataFrame) -> list[dict[str, str]]:
    """Table II: each number the paper reports for KDiffE, against ours on the published split."""
    ablation = _ablation(best)
    rows = []
    tested = (f"our 95 % CI over seeds at least {1 - verdicts.LEVEL_MARGIN:.0%} of the paper's number "
              "(the level rule)")
    for dataset, numbers in paper.PAPER_TABLE_II.items():
        name = f"Table II: KDiffE on {paper.DATASET_NAMES[dataset]}"
        cell = ablation[(ablation["data"] == dataset) & (ablation["variant"] == "kdiffe") & tables.kdiffe_model(ablation)]
        if cell.empty:
            kdiffe_runs = best[(best["dataset"] == dataset) & (best["variant"] == "kdiffe")]
            why = "no item features here (every KDiffE run on it recorded no KG), so no KG, diffusion or CL: only " \
                  "LightGCN rows can run" if tables.ran_without_kg(kdiffe_runs) else "not run yet"
            rows += [_row(f"{name}, {paper.METRIC_NAMES[metric]}", f"{reported:.3f}", "", UNTESTABLE, why,
                          source="Table II", tested=tested) for metric, reported in zip(tables.METRICS, numbers)]
            continue
        main = tables.main_setting(cell)
        for metric, reported in zip(tables.METRICS, numbers):
            values = main[metric].to_numpy(float)
            test = verdicts.level(values, reported)
            mean, std = _mean_std(values)
            ours = _fmt(mean, std, len(values))
            if test.verdict == UNTESTABLE:
                why = "one seed: no interval"
            else:
                ours += f", 95 % CI [{test.low:.4f}, {test.high:.4f}]"
                why = {HOLDS: f"within {verdicts.LEVEL_MARGIN:.0%} of the paper's number or above it",
                       CONTRADICTED: f"below {test.threshold:.4f} ({1 - verdicts.LEVEL_MARGIN:.0%} of it) "
                                     "throughout the interval",
                       NOT_CONFIRMED: f"the interval straddles {test.threshold:.4f}"}[test.verdict]
            rows.append(_row(f"{name}, {paper.METRIC_NAMES[metric]}", f"{reported:.3f}", ours, test.verdict,
                             _reasons(why, _kg_note(main)), source="Table II", tested=tested))
    return rows


def _drop_text(variant: str, dataset: str, metric: str) -> str:
    """The paper's drop from KDiffE to ``variant`` (Table III) as 'drop 0.005 (0.112 -> 0.107)'; '' where
    Table III reports none (w/o CL's NDCG@20 equals the full model's: no claim there)."""
    table = paper.PAPER_TABLE_III.get(dataset, {})
    if variant not in table or "kdiffe" not in table:
        return ""
    index = tables.METRICS.index(metric)
    full, ablated = table["kdiffe"][index], table[variant][index]
    return f"drop {full - ablated:.3f} ({full:.3f} -> {ablated:.3f})" if full > ablated else ""


#: What KDiffE is compared with in Tables II-III's ordering claims: its ablations, KDiffE's form of
#: LightGCN and every baseline model.
COMPARED = ("no_s", "unguided", "no_cl", *tables.KDIFFE_FORM.values(), *paper.MODEL_NAMES)

#: The reason a difference-rule verdict gives beside its numbers.
DIFFERENCE_WHY = {HOLDS: "", CONTRADICTED: "reversed: the other is significantly better",
                  NOT_CONFIRMED: "the interval holds 0"}


def _source(variant: str) -> str:
    """Where the paper makes the claim about ``variant``: Table III (the ablations) or Table II."""
    return "Table III" if variant in paper.PAPER_TABLE_III.get("tiktok", {}) else "Table II"


def ordering_claims(best: pd.DataFrame) -> list[dict[str, str]]:
    """Tables II and III's ordering: the full model above each ablation, LightGCN and every baseline
    model that ran, per data split (Recall@20; NDCG@20 too where Table III reports a drop)."""
    ablation = _ablation(best)
    ablation = ablation.assign(variant=tables.entries(ablation))
    tested = "paired over seeds: 95 % CI of KDiffE minus it above 0 (the difference rule)"
    rows = []
    for data, per_data in ablation.groupby("data", sort=True):
        full = per_data[per_data["variant"] == "kdiffe"]
        if full.empty:
            continue
        chosen = tables.main_setting(full)
        reference, note = chosen.set_index("seed"), _kg_note(chosen)
        for variant in COMPARED:
            cell = per_data[per_data["variant"] == variant]
            if cell.empty:
                continue
            other = tables.main_setting(cell).set_index("seed")
            for metric in tables.METRICS:
                reported = _drop_text(variant, str(data), metric)
                if metric != "test_recall@20" and not reported:
                    continue
                claim = f"KDiffE > {tables.entry_name(variant)} on {data} ({paper.METRIC_NAMES[metric]})"
                a, b = tables.paired_by_seed(reference[metric], other[metric])
                test = verdicts.difference(a, b)
                source = _source(variant)
                if test.verdict == UNTESTABLE:
                    rows.append(_row(claim, reported or "holds", f"difference {test.mean:+.4f}", UNTESTABLE,
                                     _reasons("fewer than two paired seeds", note), source=source, tested=tested))
                    continue
                ours = f"difference {test.mean:+.4f}, {_ci(test.low, test.high)}, {test.n} paired seeds, " \
                       f"p = {test.p:.3g}"
                why = DIFFERENCE_WHY[test.verdict]
                if reported:
                    drop = float(reported.split()[1])
                    inside = test.low <= drop <= test.high
                    why = _reasons(why, f"the paper's drop {drop:.3f} is {'inside' if inside else 'outside'} "
                                        "the interval")
                rows.append(_row(claim, reported or "holds", ours, test.verdict, _reasons(why, note),
                                 source=source, tested=tested))
    return rows


def pooled_claims(best: pd.DataFrame) -> list[dict[str, str]]:
    """KDiffE above each ablation, LightGCN and every baseline over all re-splits of one form of a
    dataset together (Recall@20): the difference rule on the (re-split, seed) pairs, where each
    re-split alone may have too few seeds to tell."""
    ablation = _ablation(best)
    if "resplit" not in ablation.columns:
        return []
    ablation = ablation.assign(variant=tables.entries(ablation),
                               resplit=pd.to_numeric(ablation["resplit"], errors="coerce").fillna(0).astype(int))
    resplits = ablation[ablation["resplit"] > 0]
    holdout = resplits.get("resplit_holdout", pd.Series("shares", index=resplits.index)).fillna("shares")
    tested = "paired over (re-split, seed): 95 % CI of KDiffE minus it above 0 (the difference rule)"
    rows = []
    for (dataset, form), group in resplits.groupby([resplits["dataset"], holdout], sort=True):
        if group["resplit"].nunique() < 2:
            continue
        for variant in COMPARED:
            a, b, pooled = [], [], 0
            for _, split in group.groupby("resplit"):
                full, other = split[split["variant"] == "kdiffe"], split[split["variant"] == variant]
                if full.empty or other.empty:
                    continue
                x, y = tables.paired_by_seed(tables.main_setting(full).set_index("seed")["test_recall@20"],
                                             tables.main_setting(other).set_index("seed")["test_recall@20"])
                a += list(x)
                b += list(y)
                pooled += len(x) > 0
            if pooled < 2:  # one re-split alone is its own claim, not a pooled one
                continue
            where = f"{dataset}, pooled over {pooled} re-splits{tables.RESPLIT_FORMS.get(form, '')}"
            test = verdicts.difference(a, b)
            claim = f"KDiffE > {tables.entry_name(variant)} on {where} (Recall@20)"
            if test.verdict == UNTESTABLE:
                rows.append(_row(claim, "holds", "", UNTESTABLE, "fewer than two pairs", source="Table II",
                                 tested=tested))
                continue
            ours = f"difference {test.mean:+.4f}, {_ci(test.low, test.high)}, {test.n} pairs, p = {test.p:.3g}"
            rows.append(_row(claim, "holds", ours, test.verdict, DIFFERENCE_WHY[test.verdict], source=_source(variant),
                             tested=tested))
    return rows


def optimum_claims(best: pd.DataFrame, dataset: str = "tiktok") -> list[dict[str, str]]:
    """Figures 6-9: each parameter's best value is the paper's default."""
    rows = []
    tested = ("the default above every other grid point, paired by seed (two-way error, one-sided 5 % "
              "each); contradicted when some point is above it (Holm)")
    for param in paper.SWEEP_PARAMS:
        default = float(paper.PAPER_DEFAULTS[param])
        number = next(n for n in range(6, 10) if param in paper.FIGURES[n].params)
        claim = f"Figure {number}: {param} best at {default:g} on {paper.DATASET_NAMES[dataset]} (Recall@20)"
        source = f"Figure {number}, Section VI-A defaults"
        table = aggregate.grid_matrix(best, param, dataset, "kdiffe", "test_recall@20")
        if table.empty or default not in set(table.index.astype(float)):
            rows.append(_row(claim, f"{default:g}", "", UNTESTABLE, "no grid over it with the default point",
                             source=source, tested=tested))
            continue
        xs = table.index.astype(float).to_numpy()
        means = table.mean(axis=1).to_numpy()
        top = xs[int(np.argmax(means))]
        ours = (f"best at {top:g} ({means.max():.4f}); at {default:g}: {means[xs == default][0]:.4f}; "
                f"{len(xs)} points x {table.shape[1]} shared seeds")
        if table.shape[1] < 2 or len(xs) < 2:
            rows.append(_row(claim, f"{default:g}", ours, UNTESTABLE, "fewer than two seeds at every point",
                             source=source, tested=tested))
            continue
        test = verdicts.optimum(table.to_numpy(float), int(np.flatnonzero(xs == default)[0]))
        ours += f"; omnibus F p = {test.omnibus_p:.3g}"
        others = [x for x in xs if x != default]
        if test.verdict == HOLDS:
            why = ""
        elif test.verdict == CONTRADICTED:
            above = [f"{x:g}" for x, keep in zip(others, verdicts.holm(test.p_below)) if keep]
            why = f"significantly above the default: {', '.join(above)}"
        else:
            weakest = int(np.argmax(test.p_above))
            why = (f"not separable from {others[weakest]:g} (gap {test.gaps[weakest]:+.4f}, one-sided p = "
                   f"{test.p_above[weakest]:.3g})")
            if test.omnibus_p >= ALPHA:
                why = _reasons(why, "no effect of the parameter detected at all")
        rows.append(_row(claim, f"{default:g}", ours, test.verdict, why, source=source, tested=tested))
    return rows


def guidance_claims(best: pd.DataFrame, dataset: str = "tiktok") -> list[dict[str, str]]:
    """Figure 5: the user-guided diffusion beats the unguided one at every q."""
    claim = f"Figure 5: guided diffusion above unguided at every q on {paper.DATASET_NAMES[dataset]} (Recall@20)"
    tested = "paired by seed at each q: above at every q, one-sided 5 % each (the every-point rule)"
    guided = aggregate.grid_matrix(best, "q", dataset, "kdiffe", "test_recall@20")
    unguided = aggregate.grid_matrix(best, "q", dataset, "unguided", "test_recall@20")
    if guided.empty or unguided.empty:
        return [_row(claim, "holds", "", UNTESTABLE, "needs both q grids", source="Figure 5", tested=tested)]
    qs = guided.index.intersection(unguided.index)
    seeds = guided.columns.intersection(unguided.columns)
    if len(qs) < 1 or len(seeds) < 2:
        why = "fewer than two seeds run both ways at every q"
        if len(seeds) == 0:  # the guided grid judged (the one trained longest) has no unguided twin yet
            why = (f"the guided q grid judged (seeds {', '.join(str(int(x)) for x in guided.columns)}) has no "
                   "unguided run on its seeds: run tune/reproduce.py --parts grid-unguided")
        return [_row(claim, "holds", "", UNTESTABLE, why, source="Figure 5", tested=tested)]
    diff = guided.loc[qs, seeds].to_numpy(float) - unguided.loc[qs, seeds].to_numpy(float)
    test = verdicts.every(diff)
    overall = test.overall
    ours = (f"guided above at {test.above} of {len(qs)} q values; mean difference {overall.mean:+.4f}, "
            f"{_ci(overall.low, overall.high)} over {overall.n} (q, seed) pairs")
    why = {HOLDS: "", CONTRADICTED: "unguided significantly above at some q",
           NOT_CONFIRMED: "not separable at every q"}[test.verdict]
    return [_row(claim, "holds", ours, test.verdict, why, source="Figure 5", tested=tested)]


def scalability_claims(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Figure 10: seconds per epoch grow linearly with t (per dataset) and with users (Sports)."""
    rows = []
    tested = (f"least-squares log-log slope: its 95 % CI holds 1 and stays at most "
              f"{1 + verdicts.SUPERLINEAR_MARGIN:g} (the scaling rule)")
    for sweep, column, label in (("t", "t", "diffusion steps t"), ("users", "users", "users")):
        trials = aggregate.scalability_trials(frame, sweep)
        for dataset in [d for d in paper.DATASETS if d in set(trials["dataset"])]:
            claim = f"Figure 10: seconds per epoch grow linearly with {label} on {paper.DATASET_NAMES[dataset]}"
            part = trials[trials["dataset"] == dataset].dropna(subset=[column])
            x, y = part[column].to_numpy(float), part[aggregate.SECONDS].to_numpy(float)
            test = verdicts.scaling(x, y)
            if test.verdict == UNTESTABLE:
                rows.append(_row(claim, "holds", "", UNTESTABLE, "fewer than three points", source="Figure 10",
                                 tested=tested))
                continue
            ours = (f"{y.min():.2f}-{y.max():.2f} s/epoch; log-log slope {test.slope:.2f}, 95 % CI "
                    f"[{test.low:.2f}, {test.high:.2f}]")
            if sweep == "t" and tables.ran_without_kg(part):  # t reached nothing
                rows.append(_row(claim, "holds", ours, UNTESTABLE, "no item features: the diffusion, where t acts, "
                                                                   "does not run", source="Figure 10", tested=tested))
                continue
            why = {HOLDS: "", CONTRADICTED: "super-linear: the slope's interval lies above 1",
                   NOT_CONFIRMED: "slower than linear: a fixed cost dominates the range" if test.high < 1
                   else "the interval is too wide or reaches past the margin"}[test.verdict]
            if sweep == "t" and not tables.kg_recorded(part):
                why = _reasons(why, "these rows do not record whether a KG ran (kg_entities), so t may have "
                                    "reached nothing")
            rows.append(_row(claim, "holds", ours, test.verdict, why, source="Figure 10", tested=tested))
    return rows


def claims_markdown(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts()
    head = ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts.VERDICTS)
    return f"{len(table)} claims: {head}.\n\n" + tables.to_markdown(table)


def write_claims(frame: pd.DataFrame, out: Any) -> list[Any]:
    from pathlib import Path

    table = claims(frame)
    if table.empty:
        return []
    out = Path(out)
    md, csv = out / "claims.md", out / "claims.csv"
    write_atomic(md, claims_markdown(table))
    tables.write_csv(table, csv)
    return [md, csv]
