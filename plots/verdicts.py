"""The statistical rules behind every verdict of :mod:`plots.claims`: pure numpy / scipy, no pandas.

Four verdicts. **holds**: the data support the paper's statement at the 5 % level; **not
confirmed**: the data cannot tell; **contradicted**: the data support the opposite at the 5 %
level; **cannot be tested here** (with the reason; decided by the caller).

==================  ===========================================================================
rule                test
==================  ===========================================================================
optimum             "x* is the best value of a one-factor grid" (k points x n shared seeds).
(:func:`optimum`)   Error variance from the two-way (point x seed) layout, ``MSE`` with
                    (k-1)(n-1) degrees of freedom, so seeds are blocks and every contrast
                    x* - x_j has the standard error sqrt(2 MSE / n). *holds*: x* above every
                    other point, each one-sided test at 5 % (an intersection-union test: the
                    claim is a conjunction, so no correction is needed to keep its error at 5 %;
                    Berger 1982). *contradicted*: some point above x*, one-sided tests with
                    Holm's correction over the k-1 points (family error 5 %). Beside it the
                    omnibus F test of the same layout: whether the parameter matters at all.
every point         "A above B at every x" (Figure 5): paired differences per (x, seed); pooled
(:func:`every`)     error over the points, k(n-1) degrees of freedom. *holds*: above at every x
                    (intersection-union, one-sided 5 % each); *contradicted*: below at some x
                    (Holm); the mean difference over all pairs with its 95 % CI beside it.
difference          "A above B" (Tables II-III: the full model above an ablation or a baseline;
(:func:`difference`)  an ablation's drop): paired t over shared seeds, two-sided 95 % CI of the
                    mean difference. *holds*: CI above 0; *contradicted*: CI below 0.
level               "the model reaches the paper's number v" (Table II's KDiffE): one-sample t,
(:func:`level`)     95 % CI of our mean. *holds*: the CI's lower end at least (1 - margin) v, i.e.
                    within 5 % of the paper's number or above it; *contradicted*: the CI's upper
                    end below (1 - margin) v.
scaling             "cost grows linearly in x" (Figure 10): least-squares slope b of log y on log
(:func:`scaling`)   x, its 95 % CI. *holds*: the CI contains 1 and its upper end is at most
                    1 + :data:`SUPERLINEAR_MARGIN`; *contradicted*: the CI's lower end above 1
                    (super-linear); otherwise not confirmed (a CI below 1 grows slower than
                    linearly: a fixed cost dominates the range).
==================  ===========================================================================

``tests/test_verdicts.py`` checks the rules' error rates by simulation: on pure-noise grids of
6 points x 3 seeds the optimum rule says *holds* in at most 5 % of draws, and with an effect of 3
noise std at the claimed point in at least 80 %; the same for the difference rule.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
HOLDS, NOT_CONFIRMED, CONTRADICTED, UNTESTABLE = "holds", "not confirmed", "contradicted", "cannot be tested here"
VERDICTS = (HOLDS, NOT_CONFIRMED, CONTRADICTED, UNTESTABLE)
LEVEL_MARGIN = 0.05  #: a reported number is reached when we are within 5 % of it, or above
SUPERLINEAR_MARGIN = 0.2  #: "linear" allows a log-log slope CI up to 1.2


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """Which of ``p_values`` Holm's step-down procedure rejects at family level ``alpha``."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    reject = np.zeros(len(p), bool)
    for rank, index in enumerate(order):
        if p[index] > alpha / (len(p) - rank):
            break
        reject[index] = True
    return reject


class OptimumTest(NamedTuple):
    verdict: str
    gaps: np.ndarray  #: mean at x* minus mean at each other point (in the order of the others)
    p_above: np.ndarray  #: one-sided p of x* above each other point
    p_below: np.ndarray  #: one-sided p of each other point above x* (before Holm)
    omnibus_p: float  #: F test: does the parameter matter at all
    df: int


def _two_way_mse(values: np.ndarray) -> tuple[float, int]:
    k, n = values.shape
    resid = values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + values.mean()
    df = (k - 1) * (n - 1)
    return float((resid ** 2).sum() / df), df


def omnibus(values: np.ndarray) -> float:
    """p of the F test for a point effect in a (points x seeds) layout with seeds as blocks."""
    values = np.asarray(values, float)
    k, n = values.shape
    mse, df = _two_way_mse(values)
    ms_point = n * float(((values.mean(1) - values.mean()) ** 2).sum()) / (k - 1)
    if mse == 0:
        return 0.0 if ms_point > 0 else 1.0
    return float(stats.f.sf(ms_point / mse, k - 1, df))


def optimum(values: np.ndarray, claimed: int, alpha: float = ALPHA) -> OptimumTest:
    """The optimum rule on ``values`` (k points x n seeds, the same seeds at every point) for the
    claimed best point ``claimed`` (row index). Needs k >= 2 and n >= 2."""
    values = np.asarray(values, float)
    k, n = values.shape
    if k < 2 or n < 2:
        raise ValueError(f"an optimum test needs 2 points and 2 seeds at least, got {k} x {n}")
    mse, df = _two_way_mse(values)
    means = values.mean(1)
    others = [j for j in range(k) if j != claimed]
    gaps = means[claimed] - means[others]
    if mse == 0:  # no noise left: the ordering is exact
        p_above, p_below = (gaps <= 0).astype(float), (gaps >= 0).astype(float)
    else:
        t = gaps / math.sqrt(2 * mse / n)
        p_above, p_below = stats.t.sf(t, df), stats.t.sf(-t, df)
    if (p_above < alpha).all():
        verdict = HOLDS
    elif holm(p_below, alpha).any():
        verdict = CONTRADICTED
    else:
        verdict = NOT_CONFIRMED
    return OptimumTest(verdict, gaps, p_above, p_below, omnibus(values), df)


class Difference(NamedTuple):
    verdict: str
    mean: float
    low: float  #: 95 % CI of the mean difference
    high: float
    p: float  #: two-sided
    n: int


def _t_interval(d: np.ndarray, alpha: float) -> tuple[float, float, float]:
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return mean, mean, (1.0 if mean == 0 else 0.0)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    return mean - half, mean + half, p


def difference(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> Difference:
    """The difference rule for "a above b" on aligned (paired by seed) values; NaNs and
    :data:`UNTESTABLE` with fewer than two pairs."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return Difference(UNTESTABLE, float(d.mean()) if len(d) else math.nan, math.nan, math.nan, math.nan, len(d))
    low, high, p = _t_interval(d, alpha)
    verdict = HOLDS if low > 0 else CONTRADICTED if high < 0 else NOT_CONFIRMED
    return Difference(verdict, float(d.mean()), low, high, p, len(d))


class Level(NamedTuple):
    verdict: str
    mean: float
    low: float  #: 95 % CI of our mean
    high: float
    threshold: float  #: (1 - margin) x the paper's number


def level(values: Sequence[float], reported: float, margin: float = LEVEL_MARGIN, alpha: float = ALPHA) -> Level:
    """The level rule: do ``values`` (seeds) reach ``reported`` (within ``margin``, relative)?"""
    v = np.asarray(values, float)
    threshold = (1 - margin) * reported
    if len(v) < 2:
        return Level(UNTESTABLE, float(v.mean()) if len(v) else math.nan, math.nan, math.nan, threshold)
    low, high, _ = _t_interval(v, alpha)
    verdict = HOLDS if low >= threshold else CONTRADICTED if high < threshold else NOT_CONFIRMED
    return Level(verdict, float(v.mean()), low, high, threshold)


class EveryPoint(NamedTuple):
    verdict: str
    per_point: np.ndarray  #: mean difference at each point
    above: int  #: points where the mean difference is positive
    overall: Difference  #: over all (point, seed) pairs


def every(differences: np.ndarray, alpha: float = ALPHA) -> EveryPoint:
    """The every-point rule on paired differences (k points x n seeds, A - B)."""
    d = np.asarray(differences, float)
    k, n = d.shape
    per_point = d.mean(1)
    overall = difference(d.ravel(), np.zeros(d.size), alpha)
    if n < 2:
        return EveryPoint(UNTESTABLE, per_point, int((per_point > 0).sum()), overall)
    df = k * (n - 1)
    mse = float(((d - per_point[:, None]) ** 2).sum() / df)
    if mse == 0:
        p_above, p_below = (per_point <= 0).astype(float), (per_point >= 0).astype(float)
    else:
        t = per_point / math.sqrt(mse / n)
        p_above, p_below = stats.t.sf(t, df), stats.t.sf(-t, df)
    verdict = HOLDS if (p_above < alpha).all() else CONTRADICTED if holm(p_below, alpha).any() else NOT_CONFIRMED
    return EveryPoint(verdict, per_point, int((per_point > 0).sum()), overall)


class Scaling(NamedTuple):
    verdict: str
    slope: float  #: of log y on log x
    low: float
    high: float
    n: int


def scaling(x: Sequence[float], y: Sequence[float], alpha: float = ALPHA) -> Scaling:
    """The scaling rule: the log-log slope of ``y`` (seconds) on ``x`` (users, steps) and its CI."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(lx) < 3 or np.unique(lx).size < 3:
        return Scaling(UNTESTABLE, math.nan, math.nan, math.nan, len(lx))
    fit = stats.linregress(lx, ly)
    half = float(stats.t.ppf(1 - alpha / 2, len(lx) - 2)) * float(fit.stderr)
    slope = float(fit.slope)
    low, high = slope - half - 1e-9, slope + half + 1e-9  # exact data: a CI of width 0 still holds its value
    verdict = HOLDS if low <= 1 <= high and high <= 1 + SUPERLINEAR_MARGIN else CONTRADICTED if low > 1 \
        else NOT_CONFIRMED
    return Scaling(verdict, slope, low, high, len(lx))
