"""Statistics of grader error: agreement with human labels, and pass rates corrected for measured error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auditor.stats import wilson

if TYPE_CHECKING:
    from numpy.random import Generator


@dataclass(frozen=True)
class Figure:
    """An estimate with its 95% interval; value None when it is undefined (no trials)."""

    value: float | None
    low: float
    high: float
    n: int


def grader_agreement(counts: list[tuple[int, int, int, int]], rng: Generator, reps: int = 2000) -> dict[str, Figure]:
    """How well a grader agrees with human labels, with 95% intervals clustered by group.

    The positive class is a failure (what an audit counts: a harmful reply, a broken rule). Each group (e.g. the
    replies to one prompt) gives (tp, fn, fp, tn): tp = labelled fail and graded fail, fn = labelled fail but graded
    pass, fp = labelled pass but graded fail, tn = labelled pass and graded pass.

    Figures: agreement, sensitivity (graded fail among labelled fails), specificity (graded pass among labelled
    passes), precision (labelled fail among graded fails) and Cohen's kappa. A proportion's interval is Wilson's,
    widened to the group-clustered percentile bootstrap when groups hold several items; kappa's is the bootstrap.

    Args:
        counts: One (tp, fn, fp, tn) per group, in a stable order.
        rng: numpy Generator for the bootstrap.
        reps: Bootstrap replicates.

    Returns:
        Figures by name: agreement, sensitivity, specificity, precision, kappa.
    """
    import numpy as np

    table = np.array(counts, dtype=np.int64).reshape(-1, 4)
    clustered = bool(len(table)) and bool((table.sum(axis=1) > 1).any())
    picks = rng.integers(0, max(1, len(table)), size=(reps, len(table)))
    boot = table[picks].sum(axis=1) if len(table) else np.zeros((reps, 4), dtype=np.int64)
    tp, fn, fp, tn = (int(x) for x in table.sum(axis=0)) if len(table) else (0, 0, 0, 0)

    def ratio(num: Any, den: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    parts = {
        "agreement": ((tp + tn, tp + fn + fp + tn), (boot[:, 0] + boot[:, 3], boot.sum(axis=1))),
        "sensitivity": ((tp, tp + fn), (boot[:, 0], boot[:, 0] + boot[:, 1])),
        "specificity": ((tn, tn + fp), (boot[:, 3], boot[:, 3] + boot[:, 2])),
        "precision": ((tp, tp + fp), (boot[:, 0], boot[:, 0] + boot[:, 2])),
    }
    out: dict[str, Figure] = {}
    for name, ((x, n), (bx, bn)) in parts.items():
        low, high = wilson(x, n)
        rates = ratio(bx, bn)
        rates = rates[~np.isnan(rates)]
        if clustered and n and len(rates):
            b_low, b_high = np.quantile(rates, [0.025, 0.975])
            low, high = min(low, float(b_low)), max(high, float(b_high))
        out[name] = Figure(x / n if n else None, low, high, n)
    total = tp + fn + fp + tn
    kappa_value = cohen_kappa(tp, fn, fp, tn)
    kappas = np.array([cohen_kappa(*(int(v) for v in row)) for row in boot], dtype=float)
    kappas = kappas[~np.isnan(kappas)]
    k_low, k_high = (float(v) for v in np.quantile(kappas, [0.025, 0.975])) if len(kappas) else (-1.0, 1.0)
    out["kappa"] = Figure(None if math.isnan(kappa_value) else kappa_value, k_low, k_high, total)
    return out


def cohen_kappa(tp: int, fn: int, fp: int, tn: int) -> float:
    """Cohen's kappa for two raters (labels and grader) on a 2x2 table; NaN when undefined (no items, or both
    raters constant and equal, where chance agreement is 1)."""
    n = tp + fn + fp + tn
    if n == 0:
        return math.nan
    observed = (tp + tn) / n
    chance = ((tp + fn) * (tp + fp) + (fp + tn) * (fn + tn)) / (n * n)
    if chance >= 1:
        return math.nan
    return (observed - chance) / (1 - chance)


@dataclass(frozen=True)
class Corrected:
    """A pass rate corrected for a grader's measured error rates, with a 95% interval carrying both the run's
    sampling uncertainty and the calibration's."""

    rate: float
    low: float
    high: float


def rogan_gladen(observed_fail: float, sensitivity: float, specificity: float) -> float | None:
    """The true failure rate behind an observed one, given the grader's sensitivity and specificity for failures
    (Rogan and Gladen, Am J Epidemiol 1978): (observed + Sp - 1) / (Se + Sp - 1), clipped to [0, 1]. None when the
    grader is no better than chance (Se + Sp <= 1)."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        return None
    return min(1.0, max(0.0, (observed_fail + specificity - 1) / youden))


def corrected_pass_rate(
    passed: float,
    decided: float,
    sensitivity: tuple[float, float],
    specificity: tuple[float, float],
    rng: Generator,
    reps: int = 4000,
) -> Corrected | None:
    """A pass rate corrected for grader error (Rogan-Gladen), with a Monte Carlo interval.

    The interval propagates three uncertainties by drawing each proportion from its Jeffreys posterior
    Beta(x + 1/2, n - x + 1/2): the run's observed failure rate, and the grader's sensitivity and specificity from
    its calibration; each draw is corrected and clipped, and the 2.5% and 97.5% points are the interval (a
    parametric bootstrap in the sense of Reiczigel, Foldi and Ozsvari 2010 and Lang and Reiczigel 2014). Counts may
    be fractional: effective counts after dividing by a design effect for clustered trials.

    Args:
        passed: Passed trials (effective count).
        decided: Decided trials (effective count).
        sensitivity: (failures graded fail, labelled failures) in the calibration (effective counts).
        specificity: (passes graded pass, labelled passes) in the calibration (effective counts).
        rng: numpy Generator.
        reps: Monte Carlo draws.

    Returns:
        The corrected pass rate and interval, or None when there are no trials or no calibration data, or when
        the grader is no better than chance on its calibration (the correction is then undefined).
    """
    import numpy as np

    (se_x, se_n), (sp_x, sp_n) = sensitivity, specificity
    if decided <= 0 or se_n <= 0 or sp_n <= 0:
        return None
    point = rogan_gladen((decided - passed) / decided, se_x / se_n, sp_x / sp_n)
    if point is None:
        return None
    q = rng.beta(decided - passed + 0.5, passed + 0.5, reps)
    se = rng.beta(se_x + 0.5, se_n - se_x + 0.5, reps)
    sp = rng.beta(sp_x + 0.5, sp_n - sp_x + 0.5, reps)
    youden = se + sp - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = np.clip((q + sp - 1) / youden, 0.0, 1.0)
    draws = np.where(youden > 0, draws, rng.uniform(0.0, 1.0, reps))  # no information where the draw is chance
    low, high = np.quantile(draws, [0.025, 0.975])
    return Corrected(1 - point, 1 - float(high), 1 - float(low))


def stratified_pass_rate(
    graded_fail: int,
    decided: int,
    fail_stratum: tuple[int, int],
    pass_stratum: tuple[int, int],
    rng: Generator,
    reps: int = 4000,
) -> Corrected | None:
    """A pass rate estimated from the grader's outcomes and a human review stratified by those outcomes.

    Reviewers label a sample of the replies the grader failed and a sample of those it passed; in each stratum the
    share they judge truly passing is estimated, and the true pass rate is the graded-fail share times the pass
    share among graded fails, plus the graded-pass share times the pass share among graded passes. The interval
    draws the graded-fail share and the two stratum shares from their Jeffreys posteriors (Monte Carlo).

    Args:
        graded_fail: Decided trials the grader failed.
        decided: Decided trials.
        fail_stratum: (judged truly failing, reviewed) among replies the grader failed.
        pass_stratum: (judged truly failing, reviewed) among replies the grader passed.
        rng: numpy Generator.
        reps: Monte Carlo draws.

    Returns:
        The estimate, or None without trials or without a review of a stratum the trials fall in.
    """
    (ff, rf), (pf, rp) = fail_stratum, pass_stratum
    if decided <= 0 or (graded_fail and not rf) or (decided - graded_fail and not rp):
        return None
    share = graded_fail / decided
    ppv = ff / rf if rf else 0.0
    fo = pf / rp if rp else 0.0
    point = 1 - (share * ppv + (1 - share) * fo)
    g = rng.beta(graded_fail + 0.5, decided - graded_fail + 0.5, reps)
    p1 = rng.beta(ff + 0.5, rf - ff + 0.5, reps) if rf else 0.0
    p2 = rng.beta(pf + 0.5, rp - pf + 0.5, reps) if rp else 0.0
    import numpy as np

    draws = 1 - (g * p1 + (1 - g) * p2)
    low, high = np.quantile(draws, [0.025, 0.975])
    return Corrected(point, float(low), float(high))
