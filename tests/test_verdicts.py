"""plots/verdicts.py: known answers, and the rules' error rates on simulated grids."""

import math

import numpy as np
import pytest
from scipy import stats

from plots import verdicts as v


def rates(outcomes):
    outcomes = list(outcomes)
    return {name: outcomes.count(name) / len(outcomes) for name in v.VERDICTS}


def grid(rng, effect=0.0, points=6, seeds=3, claimed=1):
    """Pure noise (std 1) with a shared per-seed offset, plus ``effect`` std at the claimed point."""
    values = rng.normal(size=(points, seeds)) + 0.5 * rng.normal(size=(1, seeds))
    values[claimed] += effect
    return values


def test_optimum_rule_on_noise_says_holds_at_most_5_percent_and_finds_a_planted_optimum():
    rng = np.random.default_rng(0)
    noise = rates(v.optimum(grid(rng), 1).verdict for _ in range(1000))
    assert noise[v.HOLDS] <= 0.05 and noise[v.CONTRADICTED] <= 0.05  # Holm keeps the family at 5 %
    assert noise[v.NOT_CONFIRMED] >= 0.9
    planted = rates(v.optimum(grid(rng, 3.0), 1).verdict for _ in range(1000))
    assert planted[v.HOLDS] >= 0.8
    elsewhere = rates(v.optimum(grid(rng, 3.0, claimed=4), 1).verdict for _ in range(1000))  # best is not x*
    assert elsewhere[v.HOLDS] == 0 and elsewhere[v.CONTRADICTED] >= 0.5


def test_optimum_known_answer():
    values = np.array([[1.0, 2.0, 3.0], [2.0, 3.1, 3.9], [0.0, 1.0, 2.1]])
    test = v.optimum(values, 1)
    k, n = values.shape
    resid = values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + values.mean()
    mse = (resid ** 2).sum() / ((k - 1) * (n - 1))
    t = (values[1].mean() - values[0].mean()) / math.sqrt(2 * mse / n)
    assert test.df == 4 and test.p_above[0] == pytest.approx(stats.t.sf(t, 4))
    assert test.gaps == pytest.approx([values[1].mean() - values[0].mean(), values[1].mean() - values[2].mean()])
    # the omnibus F test of a randomised block design, as the textbook computes it
    ms_point = n * ((values.mean(1) - values.mean()) ** 2).sum() / (k - 1)
    assert test.omnibus_p == pytest.approx(stats.f.sf(ms_point / mse, 2, 4))
    assert test.verdict == v.HOLDS  # every seed puts point 1 above both others, by about a whole unit
    assert v.optimum(values, 2).verdict == v.CONTRADICTED
    with pytest.raises(ValueError, match="2 seeds"):
        v.optimum(values[:, :1], 0)


def test_holm_steps_down():
    assert list(v.holm([0.01, 0.04, 0.03])) == [True, False, False]  # 0.01 <= 0.05/3; 0.03 > 0.05/2
    assert list(v.holm([0.01, 0.02, 0.04])) == [True, True, True]
    assert list(v.holm([0.2, 0.01])) == [False, True]


def test_difference_rule_on_noise_and_on_a_planted_drop():
    rng = np.random.default_rng(1)
    noise = rates(v.difference(rng.normal(size=5), rng.normal(size=5)).verdict for _ in range(1000))
    assert noise[v.HOLDS] <= 0.05 and noise[v.CONTRADICTED] <= 0.05
    planted = rates(v.difference(rng.normal(size=5) + 3, rng.normal(size=5)).verdict for _ in range(1000))
    assert planted[v.HOLDS] >= 0.8


def test_difference_known_answer_and_too_few_seeds():
    a, b = np.array([0.110, 0.112, 0.114]), np.array([0.100, 0.111, 0.109])
    test = v.difference(a, b)
    d = a - b
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert (test.mean, test.low, test.high) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    assert test.p == pytest.approx(stats.ttest_rel(a, b).pvalue) and test.verdict == v.NOT_CONFIRMED
    assert v.difference(a, a - 0.01).verdict == v.HOLDS  # a constant gap: no spread, exact
    assert v.difference(a - 0.01, a).verdict == v.CONTRADICTED
    assert v.difference([0.1], [0.2]).verdict == v.UNTESTABLE


def test_level_rule():
    assert v.level([0.1086, 0.1070, 0.1101, 0.1092, 0.1081], 0.112).verdict == v.HOLDS  # within 5 %
    assert v.level([0.080, 0.081, 0.082], 0.095).verdict == v.CONTRADICTED
    wide = v.level([0.095, 0.115, 0.105], 0.112)
    assert wide.verdict == v.NOT_CONFIRMED and wide.threshold == pytest.approx(0.95 * 0.112)
    assert v.level([0.2], 0.112).verdict == v.UNTESTABLE


def test_every_point_rule():
    rng = np.random.default_rng(2)
    noise = rates(v.every(rng.normal(size=(6, 3))).verdict for _ in range(1000))
    assert noise[v.HOLDS] <= 0.05 and noise[v.CONTRADICTED] <= 0.05
    planted = rates(v.every(rng.normal(size=(6, 3)) + 3).verdict for _ in range(1000))
    assert planted[v.HOLDS] >= 0.8
    half = v.every(np.array([[1.0, 1.1], [1.2, 0.9], [-1.0, -1.1]]))
    assert half.verdict == v.CONTRADICTED and half.above == 2


def test_scaling_rule():
    x = np.array([5000, 10000, 20000, 30000, 35598])
    assert v.scaling(x, 1e-4 * x).verdict == v.HOLDS  # exactly linear: slope 1, no spread
    superlinear = v.scaling(x, 1e-7 * x ** 1.54 * np.array([1.01, 0.99, 1.0, 0.995, 1.005]))
    assert superlinear.verdict == v.CONTRADICTED and superlinear.slope == pytest.approx(1.54, abs=0.02)
    flat = v.scaling(np.array([2, 5, 10, 20, 50, 80]), 3.4 + 0.017 * np.array([2, 5, 10, 20, 50, 80]))
    assert flat.verdict == v.NOT_CONFIRMED and flat.high < 1  # a fixed cost dominates: slower than linear
    assert v.scaling([1, 2], [1, 2]).verdict == v.UNTESTABLE
