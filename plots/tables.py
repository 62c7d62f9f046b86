"""Tables II and III of the paper from tidy results frames (schema: kdiffe.results).

Every number is a test metric at a trial's best *validation* evaluation
(:func:`kdiffe.results.best_rows`), averaged over seeds; selection never looks at test. The paper's
own numbers come from :mod:`kdiffe.paper`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from kdiffe.config import FIELDS, VARIANTS as VARIANT_FLAGS
from kdiffe.files import replace_atomic, write_atomic
from kdiffe.catalog import MODELS
from kdiffe.paper import (PAPER_TABLE_II, PAPER_TABLE_III, PUBLISHED_SOURCES, PUBLISHED_TABLE_II,  # noqa: F401
                          MODEL_NAMES, VARIANT_NAMES, VARIANT_ORDER)
from kdiffe.results import CONFIG_COLUMNS, SELECTION_METRIC, best_rows, is_rerun  # the one definition
from plots import verdicts

METRICS = ("test_recall@20", "test_ndcg@20")


RESPLIT_FORMS = {"one": ", one held out per user", "shares": ", per-user shares"}  #: Config.resplit_holdout


def data_label(frame: pd.DataFrame) -> pd.Series:
    """The data a row was trained on: the dataset, and which re-split of it (``resplit`` > 0)."""
    label = frame["dataset"].astype(str)
    if "resplit" not in frame.columns:
        return label
    resplit = pd.to_numeric(frame["resplit"], errors="coerce").fillna(0).astype(int)
    def text(column: str) -> pd.Series:  # an all-empty column reads as float NaN
        values = frame.get(column, pd.Series("", index=frame.index))
        return values.map(lambda v: "" if pd.isna(v) else str(v)).astype(str)  # (an empty map is float)

    ratios, holdout = text("resplit_ratios"), text("resplit_holdout")
    suffix = (" (re-split " + resplit.astype(str) + ratios.map(lambda r: f" {r}" if r else "")
              + holdout.map(RESPLIT_FORMS).fillna("") + ")")
    return label.where(resplit == 0, label + suffix)


#: KDiffE's LightGCN variant (layer sum, L2 over every parameter: Eq. 14) as a table names it, apart
#: from the registered model ``lightgcn`` (He et al. 2020 as published), which results files also
#: record under the name "lightgcn".
KDIFFE_FORM = {"lightgcn": "lightgcn (KDiffE's form)"}


def kdiffe_model(frame: pd.DataFrame) -> pd.Series:
    """Which rows are the kdiffe model's (its variants): ``model`` is "kdiffe", or not recorded (files
    written before other models existed)."""
    if "model" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame["model"].isna() | (frame["model"].astype(str) == "kdiffe")


def entries(frame: pd.DataFrame) -> pd.Series:
    """What each row is in Table II and the claims: the kdiffe model's variant, or the baseline model's
    name; KDiffE's own LightGCN variant as :data:`KDIFFE_FORM` names it."""
    variant = frame["variant"].astype(str)
    return variant.where(~kdiffe_model(frame), variant.replace(KDIFFE_FORM))


def entry_name(entry: str) -> str:
    """Display name of an :func:`entries` value: 'KDiffE w/o S', 'LightGCN (KDiffE's form)', 'SGL'."""
    for variant, key in KDIFFE_FORM.items():
        if entry == key:
            return f"{VARIANT_NAMES[variant]} (KDiffE's form)"
    return VARIANT_NAMES.get(entry) or MODEL_NAMES.get(entry, entry)


def settings(group: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trials of one table cell split by configuration: seeds are pooled only when everything
    else is equal. Each part is labelled with the values that tell it apart ('' when there is one)."""
    columns = [c for c in CONFIG_COLUMNS if c in group.columns and c != "seed"]
    keys = group[columns].astype(str)
    varying = [c for c in columns if keys[c].nunique() > 1]
    if not varying:
        return [("", group)]
    parts = group.groupby([keys[c] for c in varying], sort=True)
    return [(", ".join(f"{c}={v}" for c, v in zip(varying, key if isinstance(key, tuple) else (key,))), part)
            for key, part in sorted(parts, key=lambda kv: -len(kv[1]))]


def main_setting(cell: pd.DataFrame, metric: str = SELECTION_METRIC) -> pd.DataFrame:
    """The trials of one table cell in one configuration (:func:`settings`; seeds are pooled only
    there): the one with the best mean validation score, as a user selecting on validation would
    take; ties go to the most replicated."""
    parts = settings(cell)
    if not parts:
        return cell
    return max(parts, key=lambda part: (round(float(part[1][metric].mean()), 12), len(part[1])))[1]


def kg_recorded(rows: pd.DataFrame) -> bool:
    """Whether the rows record kg_entities (files written before the column existed do not)."""
    return "kg_entities" in rows.columns and bool(rows["kg_entities"].notna().any())


def ran_without_kg(rows: pd.DataFrame) -> bool:
    """Whether the rows record that no KG ran (kg_entities 0 throughout: a dataset without item
    features); False where the column leaves it unknown."""
    return kg_recorded(rows) and bool((rows["kg_entities"].dropna() == 0).all())


def other_kg(rows: pd.DataFrame) -> str:
    """The rows' KG source when it is not the default, the concept KG built from item features
    ('file': the dataset's own kg.txt), else ''."""
    sources = set(rows["kg"].dropna().astype(str)) - {FIELDS["kg"].default} if "kg" in rows.columns else set()
    return "/".join(sorted(sources))


def variant_label(variant: str, setting: str, group: pd.DataFrame) -> str:
    """'kdiffe', 'kdiffe (theta2=4e-05)'; ' [no KG]' when a variant that uses the KG ran without
    one (a dataset without item features: knowledge, diffusion and CL were off), ' [kg=file]' when
    it ran on the dataset's own kg.txt instead of the concept KG."""
    label = variant + (f" ({setting})" if setting else "")
    if variant in VARIANT_FLAGS and VARIANT_FLAGS[variant]["use_kg"]:
        kg = other_kg(group)
        if ran_without_kg(group):
            label += " [no KG]"
        elif kg:
            label += f" [kg={kg}]"
    return label


def _order(variants: pd.Series) -> pd.Series:
    """KDiffE's variants in the paper's order, then the registered baselines in registry order (the
    LightGCN model just before KDiffE's form of it)."""
    rank = {v: i for i, v in enumerate((*VARIANT_ORDER, *(m for m in MODELS if m not in VARIANT_ORDER)))}
    forms = set(KDIFFE_FORM.values())

    def position(label: str) -> float:
        entry = next((f for f in forms if label.startswith(f)), label.split(" ")[0])  # 'no_cl (theta2=1e-05)'
        base = next((v for v, f in KDIFFE_FORM.items() if f == entry), entry)
        return rank.get(base, len(rank)) + 0.5 * (entry in forms)

    return variants.map(lambda v: position(str(v)))


def table_ii(frame: pd.DataFrame, metric: str = "val_recall@20", reference: str = "kdiffe") -> pd.DataFrame:
    """Table II: per dataset x model (KDiffE's variants apart), test Recall@20 / NDCG@20 at each
    trial's best validation evaluation, mean and std (ddof=1) over the trials (seeds); the same at
    each trial's best *test* evaluation (the authors' protocol, optimistic); the two-sided paired
    t-test over the seeds both ran against ``reference`` (KDiffE) on the same data; and the number
    published for the model where there is one (kdiffe.paper.PUBLISHED_TABLE_II).

    ``frame`` is a tidy results frame (kdiffe.results schema). Columns: dataset, variant, runs,
    recall@20, recall@20 std, ndcg@20, ndcg@20 std, best-test recall@20, p vs kdiffe,
    paper recall@20, paper ndcg@20, paper (where the published numbers come from).
    """
    best = best_rows(frame, metric)
    best = best.assign(data=data_label(best), variant=entries(best))
    optimistic = best_rows(frame, "test_recall@20").set_index("trial_id")["test_recall@20"]
    rows = []
    for data, per_data in best.groupby("data", sort=True):
        ref_parts = settings(per_data[per_data["variant"] == reference])
        ref = ref_parts[0][1].set_index("seed")["test_recall@20"] if ref_parts[0][1].size else pd.Series(dtype=float)
        for variant, cell in per_data.groupby("variant", sort=True):
            published = PUBLISHED_TABLE_II.get(str(variant), {}).get(str(data))
            for setting, group in settings(cell):
                recall, ndcg = group["test_recall@20"], group["test_ndcg@20"]
                is_ref = variant == reference and setting == ref_parts[0][0]
                rows.append({"dataset": data, "variant": variant_label(variant, setting, group),
                             "runs": len(group), "recall@20": recall.mean(),
                             "recall@20 std": recall.std(ddof=1) if len(group) > 1 else np.nan,
                             "ndcg@20": ndcg.mean(), "ndcg@20 std": ndcg.std(ddof=1) if len(group) > 1 else np.nan,
                             "best-test recall@20": optimistic.reindex(group["trial_id"]).mean(),
                             f"p vs {reference}": np.nan if is_ref or ref.empty else paired_p(
                                 *paired_by_seed(group.set_index("seed")["test_recall@20"], ref)),
                             "paper recall@20": published[0] if published else np.nan,
                             "paper ndcg@20": published[1] if published else np.nan,
                             "paper": PUBLISHED_SOURCES.get(str(variant), "") if published else ""})
    columns = ["dataset", "variant", "runs", "recall@20", "recall@20 std", "ndcg@20", "ndcg@20 std",
               "best-test recall@20", f"p vs {reference}", "paper recall@20", "paper ndcg@20", "paper"]
    table = pd.DataFrame(rows, columns=columns)
    if table.empty:
        return table
    return table.sort_values(["dataset", "variant"], key=lambda c: _order(c) if c.name == "variant" else c) \
        .reset_index(drop=True)


def table_iii(frame: pd.DataFrame, metric: str = "val_recall@20", reference: str = "kdiffe") -> pd.DataFrame:
    """Table III: per dataset and variant of the kdiffe model, mean ± std (ddof=1) over seeds of test Recall@20 / NDCG@20
    at each trial's best validation evaluation, and the two-sided paired t-test
    (scipy.stats.ttest_rel over the seeds both ran) of each variant against ``reference``.

    Columns: dataset, variant, seeds, ``test_recall@20 mean|std|p``, ``test_ndcg@20 mean|std|p``,
    paper recall@20, paper ndcg@20 (the paper's Table III where the dataset matches).
    """
    best = best_rows(frame, metric)
    best = best[kdiffe_model(best)]
    best = best.assign(data=data_label(best))
    rows = []
    for dataset, per_dataset in best.groupby("data", sort=True):
        ref_parts = settings(per_dataset[per_dataset["variant"] == reference])
        ref = ref_parts[0][1].set_index("seed") if len(ref_parts[0][1]) else pd.DataFrame()
        for variant, cell in sorted(per_dataset.groupby("variant"), key=lambda kv: _order(pd.Series([kv[0]]))[0]):
            for setting, group in settings(cell):
                row = {"dataset": dataset, "variant": variant_label(variant, setting, group),
                       "seeds": len(group)}
                for name in METRICS:
                    values = group[name].to_numpy(dtype=float)
                    row[f"{name} mean"] = values.mean()
                    row[f"{name} std"] = values.std(ddof=1) if len(values) > 1 else np.nan
                    row[f"{name} p"] = paired_p(*paired_by_seed(group.set_index("seed")[name], ref[name])) \
                        if variant != reference and not ref.empty else np.nan
                paper = PAPER_TABLE_III.get(str(dataset), {}).get(variant)
                row["paper recall@20"], row["paper ndcg@20"] = paper if paper else (np.nan, np.nan)
                rows.append(row)
    return pd.DataFrame(rows)


def paired_by_seed(values: pd.Series, reference: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two seed-indexed series on the seeds both have (each seed's mean), aligned."""
    values, reference = values.groupby(level=0).mean(), reference.groupby(level=0).mean()
    common = values.index.intersection(reference.index)
    return values.loc[common].to_numpy(float), reference.loc[common].to_numpy(float)


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test of aligned values; NaN with fewer than two pairs; a constant
    difference gives 0 (1 when it is zero), where the t statistic is undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2:
        return np.nan
    if np.allclose(a - b, (a - b)[0]):
        return 1.0 if np.allclose(a, b) else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def mean_std_text(mean: float, std: float) -> str:
    """'0.1086 ± 0.0012', or '0.1086' when there is no std (one seed)."""
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def format_table_iii(table: pd.DataFrame) -> pd.DataFrame:
    """Readable Table III: 'mean ± std' cells and p-values."""
    out = pd.DataFrame({"dataset": table["dataset"], "variant": table["variant"], "seeds": table["seeds"]})
    for name, label in zip(METRICS, ("Recall@20", "NDCG@20")):
        out[label] = [mean_std_text(m, s) for m, s in zip(table[f"{name} mean"], table[f"{name} std"])]
        out[f"p ({label})"] = [_fmt(p, "{:.3g}") for p in table[f"{name} p"]]
    out["paper"] = [f"{r:.3f} / {n:.3f}" if not math.isnan(r) else "" for r, n in
                    zip(table["paper recall@20"], table["paper ndcg@20"])]
    return out


def format_table_ii(table: pd.DataFrame, reference: str = "kdiffe") -> pd.DataFrame:
    """Readable Table II: 'mean ± std' cells, the best-test mean, the paired p, the published numbers."""
    out = pd.DataFrame({"dataset": table["dataset"], "model": table["variant"], "runs": table["runs"]})
    for name, label in (("recall@20", "Recall@20"), ("ndcg@20", "NDCG@20")):
        out[label] = [mean_std_text(m, s) for m, s in zip(table[name], table[f"{name} std"])]
    out["Recall@20, best test epoch"] = [_fmt(v) for v in table["best-test recall@20"]]
    out[f"p vs {reference}"] = [_fmt(p, "{:.3g}") for p in table[f"p vs {reference}"]]
    out["published"] = [f"{r:.4f} / {n:.4f} ({src})" if not math.isnan(r) else "" for r, n, src in
                        zip(table["paper recall@20"], table["paper ndcg@20"], table["paper"])]
    return out


def write_table_ii(table: pd.DataFrame, out_dir: str | Path, stem: str = "table_ii") -> tuple[Path, Path]:
    """Table II as CSV (every number) and markdown (:func:`format_table_ii`)."""
    return write_table(table, out_dir, stem, markdown=to_markdown(format_table_ii(table)))


def _fmt(value: float, pattern: str = "{:.4f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


_MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", "\r": " ", "\n": " "})


def markdown_text(value: object) -> str:
    """Text from result files made inert in a markdown table cell or heading: backslash and ``|``
    escaped, ``&`` and ``<`` as entities (no tag or entity can start; ``>`` then stays literal,
    as in "KDiffE > LightGCN"), line breaks as spaces. Every markdown writer in plots/ uses it."""
    return str(value).translate(_MARKDOWN_ESCAPES)


#: First characters a spreadsheet reads as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        try:
            float(value)  # a number written as text ("-0.0034") stays as is
        except ValueError:
            value = "'" + value
    # pandas leaves a bare CR unquoted and readers start a new row there; a LF gets the cell quoted
    return value.replace("\r", "\n")


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """``table`` as CSV with text cells that a spreadsheet would run as a formula prefixed with
    ``'`` and carriage returns in text as line feeds; numbers untouched. Every CSV writer in
    plots/ uses it."""
    out = table.copy()
    for i in [i for i in range(out.shape[1]) if not pd.api.types.is_numeric_dtype(out.iloc[:, i])]:
        out.iloc[:, i] = out.iloc[:, i].map(_csv_cell)
    return replace_atomic(path, lambda tmp: out.to_csv(tmp, index=False))


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (no tabulate dependency); floats with 4 decimals, NaN blank; text
    through :func:`markdown_text`."""
    cells = [[_fmt(v) if isinstance(v, float) else markdown_text(v) for v in row]
             for row in table.itertuples(index=False)]
    header = "| " + " | ".join(map(markdown_text, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    return "\n".join([header, rule] + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | Path, stem: str,
                markdown: str | None = None) -> tuple[Path, Path]:
    """Write ``stem.md`` (``markdown``, by default :func:`to_markdown` of the table) and
    ``stem.csv`` (raw numbers) under ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv = out / f"{stem}.md", out / f"{stem}.csv"
    write_atomic(md, to_markdown(table) if markdown is None else markdown)
    write_csv(table, csv)
    return md, csv


#: The authors' protocol: each trial's best *test* epoch (what their code reports), for comparison only.
TEST_SELECTION = "test_recall@20"


def protocol_table(frame: pd.DataFrame, reference: str = "kdiffe") -> pd.DataFrame:
    """Table III under both protocols, readable: mean ± std over seeds of test Recall@20 / NDCG@20 at
    each trial's best validation evaluation with the paired p against ``reference`` (as
    :func:`table_iii`), then the same means at each trial's best test Recall@20 evaluation (the
    authors' protocol: selection on test, an optimistic number), then the paper's."""
    val = table_iii(frame, SELECTION_METRIC, reference)
    if val.empty:
        return pd.DataFrame()
    test = table_iii(frame, TEST_SELECTION, reference)
    assert list(zip(val["dataset"], val["variant"])) == list(zip(test["dataset"], test["variant"]))
    out = format_table_iii(val)
    paper = out.pop("paper")
    for name, label in zip(METRICS, ("Recall@20", "NDCG@20")):
        out[f"{label} (best test epoch)"] = [mean_std_text(m, s) for m, s in zip(test[f"{name} mean"],
                                                                                  test[f"{name} std"])]
    out["paper"] = paper
    return out


def blocks_markdown(table: pd.DataFrame, heading: str) -> str:
    """A readable table with a ``dataset`` column as markdown: one '### <heading>: <dataset>' block each."""
    return "\n".join(f"### {markdown_text(heading)}: {markdown_text(dataset)}\n\n"
                     + to_markdown(block.drop(columns="dataset"))
                     for dataset, block in table.groupby("dataset", sort=False))


def table_iii_markdown(table: pd.DataFrame) -> str:
    """Table III as markdown: one block (heading + table) per dataset, 'mean ± std' cells."""
    return blocks_markdown(format_table_iii(table), "Table III")


def write_blocks(table: pd.DataFrame, out_dir: str | Path, stem: str, heading: str) -> tuple[Path, Path]:
    """A readable table with a ``dataset`` column as ``stem.md``, one block per dataset under
    '### <heading>: <dataset>', and as ``stem.csv``."""
    return write_table(table, out_dir, stem, blocks_markdown(table, heading))


def write_table_iii(table: pd.DataFrame, out_dir: str | Path, stem: str = "table_iii") -> tuple[Path, Path]:
    """Table III: ``stem.md`` with one 'mean ± std' block per dataset, ``stem.csv`` with the raw numbers."""
    return write_table(table, out_dir, stem, table_iii_markdown(table))


#: Comparisons beyond the paper's (first minus second, per data split): what S adds to LightGCN.
COMPARISONS = (("lightgcn_s", "lightgcn (KDiffE's form)", "S added to LightGCN (KDiffE's form)"),)


def comparison_table(frame: pd.DataFrame, metric: str = SELECTION_METRIC) -> pd.DataFrame:
    """Paired differences of test Recall@20 that the write-up discusses beside the claims: each of
    :data:`COMPARISONS` on every data split, and each search's best configuration re-run against
    the suite's run of the same model (the paper's defaults, or the validation-chosen θ2), by the
    difference rule of plots/verdicts.py (95 % CI over shared seeds, two-sided p)."""
    reruns = frame["experiment"].map(is_rerun).astype(bool)
    suite = best_rows(frame[~reruns & (frame["kind"] == "ablation")], metric)
    suite = suite.assign(data=data_label(suite), variant=entries(suite))
    searched = best_rows(frame[reruns & (frame["kind"] == "ablation")], metric)
    searched = searched.assign(data=data_label(searched), variant=entries(searched))

    def main(cell: pd.DataFrame) -> pd.Series:
        return main_setting(cell, metric).set_index("seed")["test_recall@20"]

    pairs = []
    for data, per_data in suite.groupby("data", sort=True):
        for first, second, what in COMPARISONS:
            a, b = per_data[per_data["variant"] == first], per_data[per_data["variant"] == second]
            if len(a) and len(b):
                pairs.append((data, what, main(a), main(b)))
        for variant, cell in searched[searched["data"] == data].groupby("variant", sort=True):
            own = per_data[per_data["variant"] == variant]
            if len(own):
                pairs.append((data, f"{entry_name(str(variant))}: the search's best against the suite's", main(cell),
                              main(own)))
    rows = []
    for data, what, a, b in pairs:
        test = verdicts.difference(*paired_by_seed(a, b))
        rows.append({"dataset": data, "comparison": what, "seeds": test.n, "difference": test.mean,
                     "95 % CI low": test.low, "95 % CI high": test.high, "p": test.p})
    return pd.DataFrame(rows, columns=["dataset", "comparison", "seeds", "difference", "95 % CI low", "95 % CI high",
                                       "p"])


def write_comparisons(frame: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    table = comparison_table(frame)
    if table.empty:
        return []
    shown = table.assign(**{c: [f"{v:+.4f}" for v in table[c]] for c in ("difference", "95 % CI low", "95 % CI high")},
                         p=[_fmt(p, "{:.3g}") for p in table["p"]])
    return list(write_table(table, out_dir, "comparisons", markdown=to_markdown(shown)))
