"""plots/claims.py and the protocol / re-run tables: verdicts on hand-made results with known answers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdiffe.config import Config
from kdiffe.results import COLUMNS, rerun_name, result_row
from plots import aggregate, claims, figures, tables


def trial(experiment, variant, seed, recall, *, kind="ablation", sweep="", epochs=((1, 0.2, 0.0),), **config):
    """One trial's evaluations: (epoch, val Recall@20, offset added to ``recall`` for test Recall@20)."""
    values = Config(dataset=config.pop("dataset", "tiktok"), variant=variant, seed=seed, **config).to_dict()
    trial_id = f"{experiment}/{variant}-{seed}-{sweep}-{config}"
    return [result_row(experiment, trial_id, values,
                       {"epoch": e, "val_recall@20": v, "val_ndcg@20": v / 2, "test_recall@20": recall + off,
                        "test_ndcg@20": (recall + off) / 2, "seconds_per_epoch": 1.0, "kg_entities": 10},
                       kind=kind, sweep=sweep) for e, v, off in epochs]


def frame_of(rows):
    return pd.DataFrame([r for trial_rows in rows for r in trial_rows], columns=list(COLUMNS))


def verdicts(table):
    return dict(zip(table["claim"], table["verdict"]))


def test_reported_numbers_and_ablation_ordering():
    rows = [trial("abl", "kdiffe", s, r) for s, r in enumerate([0.110, 0.112, 0.114])]
    rows += [trial("abl", "no_s", s, r - 0.02) for s, r in enumerate([0.110, 0.112, 0.114])]  # constant gap: exact
    rows += [trial("abl", "no_cl", s, r) for s, r in enumerate([0.110, 0.112, 0.114])]  # identical: no difference
    rows += [trial("abl", "unguided", s, r) for s, r in enumerate([0.115, 0.117, 0.118])]  # above, not constant
    best = aggregate.best_evaluations(frame_of(rows))
    numbers = {r["claim"]: r for r in claims.number_claims(best)}
    full = numbers["Table II: KDiffE on TikTok, Recall@20"]  # 0.112 ± 0.002 over 3: CI [0.1070, 0.1170]
    half = stats.t.ppf(0.975, 2) * 0.002 / np.sqrt(3)
    assert full["ours"] == f"0.1120 ± 0.0020 (3 seeds), 95 % CI [{0.112 - half:.4f}, {0.112 + half:.4f}]"
    assert full["verdict"] == claims.HOLDS  # the CI stays above 95 % of 0.112 = 0.1064
    assert full["source"] == "Table II" and "level rule" in full["tested as"]
    assert numbers["Table II: KDiffE on Baby, NDCG@20"]["verdict"] == claims.UNTESTABLE
    assert numbers["Table II: KDiffE on Baby, NDCG@20"]["why"] == "not run yet"
    assert not any(c.startswith("Table III") for c in numbers)  # an ablation claims a drop, not a level
    timed = frame_of([trial("scal", "kdiffe", 0, 0.0, dataset="sports", kind="scalability", sweep="t")])
    without_kg = aggregate.best_evaluations(pd.concat([frame_of(rows), timed.assign(kg_entities=0)], ignore_index=True))
    sports = {r["claim"]: r for r in claims.number_claims(without_kg)}["Table II: KDiffE on Sports, Recall@20"]
    assert sports["verdict"] == claims.UNTESTABLE and sports["why"].startswith("no item features here")
    baby = [trial("abl", "kdiffe", s, 0.05 + s / 1000, dataset="baby", kg="file") for s in range(2)]
    on_file = {r["claim"]: r for r in claims.number_claims(aggregate.best_evaluations(frame_of(rows + baby)))}
    assert on_file["Table II: KDiffE on Baby, Recall@20"]["verdict"] == claims.CONTRADICTED  # 0.0505 against 0.095
    assert on_file["Table II: KDiffE on Baby, Recall@20"]["why"].endswith("uses kg=file, not a KG built from item features")
    assert list(tables.table_ii(frame_of(baby))["variant"]) == ["kdiffe [kg=file]"]  # labelled as what it is
    baby_lightgcn = [trial("abl", "lightgcn", s, 0.04, dataset="baby") for s in range(2)]
    (ordered,) = claims.ordering_claims(aggregate.best_evaluations(frame_of(baby + baby_lightgcn)))
    assert ordered["verdict"] == claims.HOLDS and ordered["why"] == "our KDiffE here uses kg=file, not a KG built from item features"
    order = {r["claim"]: r for r in claims.ordering_claims(best)}
    no_s = order["KDiffE > KDiffE w/o S on tiktok (Recall@20)"]
    assert no_s["verdict"] == claims.HOLDS and no_s["paper"] == "drop 0.005 (0.112 -> 0.107)"
    assert no_s["why"] == "the paper's drop 0.005 is outside the interval"  # ours is exactly 0.020
    assert order["KDiffE > KDiffE w/o S on tiktok (NDCG@20)"]["paper"] == "drop 0.005 (0.046 -> 0.041)"
    assert "KDiffE > KDiffE w/o CL on tiktok (NDCG@20)" not in order  # Table III shows no drop there
    cl = order["KDiffE > KDiffE w/o CL on tiktok (Recall@20)"]
    assert cl["verdict"] == claims.NOT_CONFIRMED and cl["why"].startswith("the interval holds 0")
    assert "inside" in cl["why"] or "outside" in cl["why"]
    reversed_ = order["KDiffE > KDiffE w/o guidance on tiktok (Recall@20)"]  # diffs -0.005, -0.005, -0.004
    assert reversed_["verdict"] == claims.CONTRADICTED and reversed_["why"].startswith("reversed")
    d = np.array([-0.005, -0.005, -0.004])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert f"95 % CI [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]" in reversed_["ours"]


def test_a_cell_run_in_two_configurations_is_judged_on_the_validation_choice():
    epochs = ((1, 0.2, 0.0),)
    rows = [trial("abl", "kdiffe", s, 0.080, epochs=epochs, theta2=4e-5) for s in range(3)]
    rows += [trial("abl2", "kdiffe", s, 0.090 + s / 1000, epochs=((1, 0.25, 0.0),), theta2=1e-5) for s in range(2)]
    best = aggregate.best_evaluations(frame_of(rows))
    cell = best.assign(data="tiktok")
    assert set(tables.main_setting(cell)["theta2"]) == {1e-5}  # fewer seeds, better validation
    numbers = {r["claim"]: r for r in claims.number_claims(best)}
    assert numbers["Table II: KDiffE on TikTok, Recall@20"]["ours"].startswith("0.0905 ± 0.0007 (2 seeds)")


def grid(param, values, seeds, curve, default_key):
    """A one-factor grid: the default trial plus one trial per (value, seed); test Recall@20 = curve(value, seed)."""
    rows = []
    for seed in seeds:
        rows.append(trial(f"grid-{param}", "kdiffe", seed, curve(default_key, seed), kind="grid", sweep="default"))
        rows += [trial(f"grid-{param}", "kdiffe", seed, curve(v, seed), kind="grid", sweep=param, **{param: v})
                 for v in values]
    return rows


def test_optima_hold_are_contradicted_or_not_confirmed():
    peaked = grid("M", [30, 80, 150], [0, 1, 2], lambda v, s: 0.10 - abs(v - 50) / 1000 + s / 10000 * (v % 7), 50)
    flat = grid("R", [6, 20], [0, 1, 2], lambda v, s: 0.10 + s / 100 + (v * s) % 5 / 1e5, 12)  # seeds spread, values not
    elsewhere = grid("q", [3, 6], [0, 1], lambda v, s: 0.10 + v / 100 + (s * v) % 4 / 1e4, 1)
    table = claims.optimum_claims(aggregate.best_evaluations(frame_of(peaked + flat + elsewhere)))
    got = {r["claim"].split(":")[1].split(" best")[0].strip(): r for r in table}
    assert got["M"]["verdict"] == claims.HOLDS and got["M"]["ours"].startswith("best at 50 ")
    assert "4 points x 3 shared seeds" in got["M"]["ours"] and "omnibus F p = " in got["M"]["ours"]
    assert got["R"]["verdict"] == claims.NOT_CONFIRMED and "no effect of the parameter detected" in got["R"]["why"]
    assert got["q"]["verdict"] == claims.CONTRADICTED and got["q"]["why"] == "significantly above the default: 3, 6"
    assert got["xi"]["verdict"] == claims.UNTESTABLE


def test_an_optimum_claim_uses_only_the_seeds_that_ran_at_every_point():
    rows = grid("M", [30, 80], [0, 1], lambda v, s: 0.10 - abs(v - 50) / 1000 + (v * s) % 3 / 1e5, 50)
    rows += [trial("grid-M", "kdiffe", 2, 0.5, kind="grid", sweep="M", M=30)]  # seed 2 only at M = 30
    best = aggregate.best_evaluations(frame_of(rows))
    table = aggregate.grid_matrix(best, "M", "tiktok", "kdiffe", "test_recall@20")
    assert list(table.columns) == [0, 1] and list(table.index) == [30, 50, 80]
    (m,) = [r for r in claims.optimum_claims(best) if r["claim"].startswith("Figure 6: M")]
    assert "3 points x 2 shared seeds" in m["ours"]


def test_guided_against_unguided_over_q():
    guided = grid("q", [2, 3], [0, 1, 2], lambda v, s: 0.11 + s / 1000 + v / 1e4, 1)
    unguided = [[dict(r, variant="unguided", trial_id=r["trial_id"] + "u",
                      **{"test_recall@20": r["test_recall@20"] - 0.01 + (r["seed"] * (r["q"] + 1)) % 3 / 1e4})
                 for r in rows] for rows in guided]
    best = aggregate.best_evaluations(frame_of(guided + unguided))
    (row,) = claims.guidance_claims(best)
    assert row["verdict"] == claims.HOLDS and "above at 3 of 3 q values" in row["ours"]
    assert "over 9 (q, seed) pairs" in row["ours"]
    unguided_better = [[dict(r, **{"test_recall@20": r["test_recall@20"] + 0.02}) for r in rows] for rows in unguided]
    (row,) = claims.guidance_claims(aggregate.best_evaluations(frame_of(guided + unguided_better)))
    assert row["verdict"] == claims.CONTRADICTED and row["why"] == "unguided significantly above at some q"
    mixed = [[dict(r, **{"test_recall@20": r["test_recall@20"] + (0.02 if r["q"] == 2 else 0.0)}) for r in rows]
             for rows in unguided]  # unguided above at q = 2 only: not above at every q
    (row,) = claims.guidance_claims(aggregate.best_evaluations(frame_of(guided + mixed)))
    assert row["verdict"] == claims.CONTRADICTED and "above at 2 of 3 q values" in row["ours"]


def test_scalability_slope_and_datasets_without_a_kg():
    def timing(dataset, t, seconds, entities, sweep="t", users=0):
        values = Config(dataset=dataset, t=t, max_users=users).to_dict()
        return [result_row("scal", f"{dataset}-{t}-{users}", values,
                           {"epoch": 3, "seconds_per_epoch": seconds, "kg_entities": entities,
                            "val_recall@20": 0.1, "n_users": users or 35598}, kind="scalability", sweep=sweep)]

    rows = [timing("tiktok", t, 1.0 + 0.02 * t, 200) for t in (2, 10, 50, 80)]
    rows += [timing("baby", t, 2.0 + 0.01 * t, 0) for t in (2, 10, 50, 80)]  # no KG: t reaches nothing
    users = (5000, 10000, 20000, 30000, 0)
    rows += [timing("sports", 10, 1e-7 * (u or 35598) ** 1.54, 0, "users", u) for u in users]  # super-linear
    got = {r["claim"]: r for r in claims.scalability_claims(frame_of(rows))}
    tiktok = got["Figure 10: seconds per epoch grow linearly with diffusion steps t on TikTok"]
    assert tiktok["verdict"] == claims.NOT_CONFIRMED and tiktok["why"].startswith("slower than linear")
    baby = got["Figure 10: seconds per epoch grow linearly with diffusion steps t on Baby"]
    assert baby["verdict"] == claims.UNTESTABLE and "no item features" in baby["why"]
    sports = got["Figure 10: seconds per epoch grow linearly with users on Sports"]
    assert sports["verdict"] == claims.CONTRADICTED and "log-log slope 1.54" in sports["ours"]
    curves, _ = aggregate.scalability_curves(frame_of(rows), "t", ["tiktok", "baby"])
    assert sorted(curves) == ["Baby [no KG]", "TikTok"]  # Figure 10's legend says so too
    unrecorded = frame_of(rows).assign(kg_entities=float("nan"))  # files written before the column existed
    got = {r["claim"]: r for r in claims.scalability_claims(unrecorded)}
    assert "do not record whether a KG ran" in got[baby["claim"]]["why"]
    assert sorted(aggregate.scalability_curves(unrecorded, "t", ["tiktok", "baby"])[0]) == ["Baby", "TikTok"]


def test_protocol_table_shows_both_selections_and_reruns_stay_apart(tmp_path):
    # epoch 1: the best test (recall + 0.5), epoch 2: the best validation (recall)
    epochs = ((1, 0.1, 0.5), (2, 0.2, 0.0))
    rows = [trial("abl", "kdiffe", s, 0.10 + s / 100, epochs=epochs) for s in range(3)]
    rows += [trial("abl", "lightgcn", s, 0.08, epochs=epochs, dataset="baby") for s in range(2)]
    rows += [trial(rerun_name("tiktok-search-kdiffe"), "kdiffe", s, 0.13, epochs=epochs, M=77) for s in range(2)]
    frame = frame_of(rows)
    table = tables.protocol_table(frame[frame["experiment"] == "abl"]).set_index(["dataset", "variant"])
    kdiffe = table.loc[("tiktok", "kdiffe")]
    assert kdiffe["Recall@20"] == "0.1100 ± 0.0100" and kdiffe["Recall@20 (best test epoch)"] == "0.6100 ± 0.0100"
    assert kdiffe["NDCG@20 (best test epoch)"] == "0.3050 ± 0.0050" and kdiffe["paper"] == "0.112 / 0.046"
    frame["trial_id"] = frame["trial_id"].astype(str)
    done = figures.render_tables(frame, tmp_path)
    assert {p.name for p in done.written} >= {"table_iii.md", "table_protocols.md", "table_search.md"}
    assert "M=77" not in (tmp_path / "table_iii.md").read_text()  # the re-run is not part of the suite
    search = (tmp_path / "table_search.md").read_text()
    assert search.startswith("### Best configurations of the searches, re-run: tiktok") and "0.1300" in search


def test_a_kg_variant_run_without_a_kg_is_labelled():
    rows = [trial("abl", "kdiffe", s, 0.05, dataset="baby") for s in range(2)]
    frame = frame_of(rows)
    frame["kg_entities"] = 0
    assert list(tables.table_ii(frame)["variant"]) == ["kdiffe [no KG]"]
    frame["kg_entities"] = 12
    assert list(tables.table_ii(frame)["variant"]) == ["kdiffe"]
    lightgcn = frame.assign(variant="lightgcn", kg_entities=0)
    assert list(tables.table_ii(lightgcn)["variant"]) == ["lightgcn (KDiffE's form)"]  # no "[no KG]": it uses none


def test_claims_markdown_counts_verdicts():
    table = pd.DataFrame([claims._row("a", "1", "1", claims.HOLDS), claims._row("b", "1", "", claims.UNTESTABLE)],
                         columns=list(claims.COLUMNS))
    assert claims.claims_markdown(table).startswith(
        "2 claims: 1 holds, 0 not confirmed, 0 contradicted, 1 cannot be tested here.")


def test_table_ii_has_every_model_with_its_spread_its_best_test_column_a_paired_p_and_published_numbers(tmp_path):
    epochs = ((1, 0.2, 0.0), (2, 0.1, 0.01))  # the best validation epoch is 1, the best test epoch 2
    rows = [trial("abl", "kdiffe", s, r, epochs=epochs) for s, r in enumerate([0.110, 0.112, 0.114])]
    rows += [trial("abl", "kdiffe", s, r, epochs=epochs, model="diffmm") for s, r in enumerate([0.100, 0.103, 0.104])]
    rows += [trial("abl", "kdiffe", s, 0.09, epochs=epochs, model="sgl") for s in range(2)]
    table = tables.table_ii(frame_of(rows)).set_index("variant")
    assert list(table.index) == ["kdiffe", "sgl", "diffmm"]  # KDiffE first, then the registry's order
    kd, dm = table.loc["kdiffe"], table.loc["diffmm"]
    assert kd["recall@20"] == pytest.approx(0.112) and kd["recall@20 std"] == pytest.approx(0.002)
    assert kd["best-test recall@20"] == pytest.approx(0.122) and np.isnan(kd["p vs kdiffe"])
    assert (kd["paper recall@20"], kd["paper ndcg@20"], kd["paper"]) == (0.112, 0.046, "KDiffE, Table II")
    assert dm["recall@20"] == pytest.approx(0.307 / 3) and dm["ndcg@20"] == pytest.approx(0.307 / 6)
    d = np.array([-0.010, -0.009, -0.010])
    t = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert dm["p vs kdiffe"] == pytest.approx(2 * stats.t.sf(abs(t), df=2))
    assert (dm["paper recall@20"], dm["paper"]) == (0.1129, "DiffMM (Jiang et al. 2024)")
    # SGL ran seeds 0 and 1: paired on those two
    assert table.loc["sgl", "p vs kdiffe"] == pytest.approx(stats.ttest_rel(np.full(2, 0.09), [0.110, 0.112]).pvalue)
    assert table.loc["sgl", "runs"] == 2 and table.loc["sgl", "paper recall@20"] == 0.0603  # DiffMM's Table 1
    assert table.loc["sgl", "paper"] == "DiffMM (Jiang et al. 2024), Table 1; KDiffE's Table II repeats it"
    md = tables.write_table_ii(tables.table_ii(frame_of(rows)), tmp_path)[0].read_text()
    assert "| tiktok | diffmm | 3 | 0.1023 ± 0.0021 | 0.0512 ± 0.0010 | 0.1123 |" in md
    assert "0.1129 / 0.0456 (DiffMM (Jiang et al. 2024))" in md


def test_kdiffe_against_every_baseline_model_that_ran_is_a_claim():
    rows = [trial("abl", "kdiffe", s, r) for s, r in enumerate([0.110, 0.112, 0.114])]
    rows += [trial("abl", "kdiffe", s, r - 0.01, model="sgl") for s, r in enumerate([0.110, 0.112, 0.114])]
    rows += [trial("abl", "kdiffe", s, r, model="diffmm") for s, r in enumerate([0.115, 0.118, 0.1185])]
    table = verdicts(claims.claims(frame_of(rows)))
    assert table["KDiffE > SGL on tiktok (Recall@20)"] == claims.HOLDS  # a constant gap: p = 0
    assert table["KDiffE > DiffMM on tiktok (Recall@20)"] == claims.CONTRADICTED  # DiffMM significantly better
    assert not any("NCL" in c or "BM3" in c for c in table)  # models that did not run make no claim


def test_the_lightgcn_model_and_kdiffes_lightgcn_variant_are_two_rows_and_two_claims():
    rows = [trial("abl", "kdiffe", s, r) for s, r in enumerate([0.110, 0.112, 0.114])]
    rows += [trial("abl", "lightgcn", s, 0.09) for s in range(3)]  # the variant: KDiffE with S, KG, CL off
    rows += [trial("base", "kdiffe", s, r, model="lightgcn") for s, r in enumerate([0.105, 0.106, 0.109])]
    frame = frame_of(rows)
    assert set(frame["variant"]) == {"kdiffe", "lightgcn"}  # results files record both as "lightgcn"
    table = tables.table_ii(frame).set_index("variant")
    assert list(table.index) == ["kdiffe", "lightgcn", "lightgcn (KDiffE's form)"]
    assert table.loc["lightgcn (KDiffE's form)", "recall@20"] == pytest.approx(0.09)
    assert table.loc["lightgcn", "recall@20"] == pytest.approx((0.105 + 0.106 + 0.109) / 3)
    assert table.loc["lightgcn", "runs"] == 3  # not pooled with the variant's three
    assert list(tables.table_iii(frame)["variant"]) == ["kdiffe", "lightgcn"]  # Table III: KDiffE's variants only
    table = verdicts(claims.claims(frame))
    assert table["KDiffE > LightGCN (KDiffE's form) on tiktok (Recall@20)"] == claims.HOLDS  # a constant gap
    assert table["KDiffE > LightGCN on tiktok (Recall@20)"] == claims.HOLDS
    gaps = np.array([0.110, 0.112, 0.114]) - np.array([0.105, 0.106, 0.109])
    assert f"p = {stats.ttest_rel(gaps, np.zeros(3)).pvalue:.3g}" in \
        claims.claims(frame).set_index("claim").loc["KDiffE > LightGCN on tiktok (Recall@20)", "ours"]


def test_an_optimum_claim_judges_the_grid_trained_longest():
    short = grid("M", [30, 80], [0, 1], lambda v, s: 0.10 + v / 1000 + (v * s) % 3 / 1e5, 50)  # 80 best
    longer = [[dict(r, trial_id=r["trial_id"] + "-60", epochs=60, seed=r["seed"] + 600,
                    **{"test_recall@20": 0.11 - abs(r["M"] - 50) / 1000 + (r["M"] * r["seed"]) % 3 / 1e5})
               for r in rows] for rows in short]  # re-run at 60 epochs on seeds of its own: 50 best
    best = aggregate.best_evaluations(frame_of(short + longer))
    table = aggregate.grid_matrix(best, "M", "tiktok", "kdiffe", "test_recall@20")
    assert list(table.columns) == [600, 601]
    (m,) = [r for r in claims.optimum_claims(best) if r["claim"].startswith("Figure 6: M")]
    assert m["ours"].startswith("best at 50 ")


def test_a_pooled_claim_pools_the_resplits_that_ran_and_names_how_many():
    def resplit_rows(resplit, gaps_by_model):
        base = [0.150, 0.152, 0.155]
        rows = [trial(f"r{resplit}", "kdiffe", s, r, resplit=resplit, resplit_holdout="one")
                for s, r in enumerate(base)]
        for model, gaps in gaps_by_model.items():
            rows += [trial(f"b{resplit}-{model}", "kdiffe", s, r - g, model=model, resplit=resplit,
                           resplit_holdout="one") for s, (r, g) in enumerate(zip(base, gaps))]
        return rows

    # SGL ran on both re-splits, NCL on re-split 1 only
    rows = resplit_rows(1, {"sgl": [0.01, 0.012, 0.008], "ncl": [0.02, 0.02, 0.02]})
    rows += resplit_rows(2, {"sgl": [0.011, 0.009, 0.010]})
    table = claims.claims(frame_of(rows)).set_index("claim")
    pooled = [c for c in table.index if "pooled" in c]
    assert pooled == ["KDiffE > SGL on tiktok, pooled over 2 re-splits, one held out per user (Recall@20)"]
    gaps = [0.01, 0.012, 0.008, 0.011, 0.009, 0.010]
    p = stats.ttest_rel(np.array(gaps), np.zeros(6)).pvalue
    assert table.loc[pooled[0], "verdict"] == claims.HOLDS
    assert f"6 pairs, p = {p:.3g}" in table.loc[pooled[0], "ours"]
