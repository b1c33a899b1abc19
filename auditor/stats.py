"""Pure statistics for audit figures: intervals, paired comparisons, sample sizes and attack rates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for the annotation: numpy is imported inside the one function that computes with it.
    from numpy.random import Generator

Z95 = 1.959963984540054


def wilson(passed: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, clipped to [0, 1]; (0, 1) when there are no trials.

    `passed` may be fractional (expected successes, for planning sample sizes)."""
    if n <= 0:
        return 0.0, 1.0
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def z_for(level: float) -> float:
    """The two-sided standard normal quantile for a confidence level.

    Args:
        level: Confidence level strictly between 0 and 1, e.g. 0.95.

    Returns:
        z such that P(-z < Z < z) = level; exactly `Z95` for 0.95, so figures match `wilson`'s default.

    Raises:
        ValueError: If level is not strictly between 0 and 1.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be strictly between 0 and 1, got {level}")
    return Z95 if level == 0.95 else NormalDist().inv_cdf(0.5 + level / 2)


def bootstrap_clustered(
    clusters: list[tuple[int, int]], rng: Generator, reps: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval for a pooled pass rate whose trials come in clusters.

    Samples of one probe share a prompt and are not independent, so a Wilson interval over all samples is too
    narrow when probes differ. This resamples whole probes with replacement and recomputes the pooled rate
    (total passed / total trials) in each replicate. Clusters with no trials are dropped first.

    The percentile bootstrap cannot see variation that the data do not show: if every probe passed every
    sample the interval is (1, 1), and with one probe it is a single point. Report it beside the Wilson
    interval (or take the wider of the two) rather than alone when probes are few or unanimous.

    Args:
        clusters: One (passed, trials) pair per probe; pass them in a stable order (sorted by probe id),
            since the resampling draws cluster positions.
        rng: The numpy Generator to draw from; the same seed and clusters give the same interval.
        reps: Number of bootstrap replicates.
        level: Confidence level of the two-sided interval.

    Returns:
        (low, high) bounds of the pooled pass rate; (0.0, 1.0) when there are no trials at all.

    Raises:
        ValueError: If a cluster has negative counts or more passes than trials, reps < 1, or a bad level.
    """
    z_for(level)  # validates level
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    for passed, trials in clusters:
        if not 0 <= passed <= trials:
            raise ValueError(f"a cluster needs 0 <= passed <= trials, got ({passed}, {trials})")
    kept = [(p, t) for p, t in clusters if t > 0]
    if not kept:
        return 0.0, 1.0
    import numpy as np

    passed_arr = np.array([p for p, _ in kept], dtype=np.int64)
    trials_arr = np.array([t for _, t in kept], dtype=np.int64)
    # replicates drawn a block at a time (the same draws as one (reps, n) block): memory stays bounded with
    # tens of thousands of probes
    block = max(1, min(reps, 2_000_000 // len(kept)))
    rates = np.empty(reps)
    for start in range(0, reps, block):
        picks = rng.integers(0, len(kept), size=(min(block, reps - start), len(kept)))
        rates[start : start + len(picks)] = passed_arr[picks].sum(axis=1) / trials_arr[picks].sum(axis=1)
    low, high = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of paired trials.

    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2), computed with integers (math.comb) and
    one correctly rounded division, so it is exact for thousands of discordant pairs.

    Args:
        b: Pairs where A passed and B failed.
        c: Pairs where A failed and B passed.

    Returns:
        The p-value; 1.0 when there are no discordant pairs.

    Raises:
        ValueError: If a count is negative.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    total = 2**n
    return 1.0 if 2 * tail >= total else 2 * tail / total


def _phi(both: int, a_only: int, b_only: int, neither: int) -> float:
    """Newcombe's continuity-corrected phi for a 2x2 table of pairs; 0 when a margin is empty."""
    n = both + a_only + b_only + neither
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    if margins == 0:
        return 0.0
    cross = both * neither - a_only * b_only
    if 2 * cross > n:
        numerator = cross - n / 2
    elif cross >= 0:
        numerator = 0.0
    else:
        numerator = float(cross)
    return numerator / math.sqrt(margins)


def _points(x: float) -> str:
    """A difference of rates in signed percentage points, without a signed zero."""
    value = round(100 * x)
    return "0" if value == 0 else f"{value:+d}"


def _p_text(p: float) -> str:
    """A p-value as "= 0.62", "= 0.012" or "< 0.001"."""
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}"


@dataclass(frozen=True)
class PairedComparison:
    """Two targets compared on the same trials: rates, their difference with a CI, and McNemar's exact test.

    Rates and the difference are None when there are no pairs; the interval is then (-1, 1).
    """

    n: int
    a_rate: float | None
    b_rate: float | None
    difference: float | None
    low: float
    high: float
    b: int  # A passed, B failed
    c: int  # A failed, B passed
    p_value: float
    level: float = 0.95

    def statement(self, name_a: str, name_b: str, what: str, alpha: float = 0.05) -> str:
        """One sentence for a report, deciding by the McNemar p-value.

        Args:
            name_a: Display name of the first target (A).
            name_b: Display name of the second target (B).
            what: What was compared, e.g. a challenge title.
            alpha: Significance level below which a difference is called detectable.

        Returns:
            E.g. "A is better than B on X (difference +25 points, 95% CI +5 to +42, McNemar exact p = 0.012,
            n = 40 paired trials)".
        """
        if self.n == 0 or self.difference is None:
            return f"{name_a} and {name_b} cannot be compared on {what}: there are no paired trials"
        if self.p_value < alpha:
            verdict = f"{name_a} is {'better' if self.difference > 0 else 'worse'} than {name_b} on {what}"
        else:
            verdict = f"no detectable difference between {name_a} and {name_b} on {what}"
        trials = "paired trial" if self.n == 1 else "paired trials"
        return (
            f"{verdict} (difference {_points(self.difference)} points, {100 * self.level:g}% CI "
            f"{_points(self.low)} to {_points(self.high)}, McNemar exact p {_p_text(self.p_value)}, "
            f"n = {self.n} {trials})"
        )


def paired_difference(pairs: list[tuple[bool, bool]], level: float = 0.95) -> PairedComparison:
    """Compare two targets' pass rates on the same trials (one (A passed, B passed) pair per trial).

    The interval is Newcombe's method 10, the hybrid score interval for paired proportions (Newcombe RG,
    "Improved confidence intervals for the difference between binomial proportions based on paired data",
    Statistics in Medicine 1998;17:2635-2650). With a = both pass, b = A only, c = B only, d = neither,
    n = a + b + c + d, p1 = (a + b)/n, p2 = (a + c)/n, D = p1 - p2 and (l1, u1), (l2, u2) the Wilson
    intervals of p1 and p2:

        low  = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        high = D + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)

    where phi is the correlation of the pairs with Newcombe's continuity correction of its numerator:
    (ad - bc - n/2) if ad - bc > n/2, 0 if 0 <= ad - bc <= n/2, ad - bc if negative; divided by
    sqrt((a+b)(c+d)(a+c)(b+d)), and 0 when any of those margins is 0.

    Args:
        pairs: One (A passed, B passed) pair per trial both targets answered.
        level: Confidence level of the interval.

    Returns:
        The comparison, with the discordant counts and the exact McNemar p-value.
    """
    z = z_for(level)
    n = len(pairs)
    both = sum(1 for a, b in pairs if a and b)
    a_only = sum(1 for a, b in pairs if a and not b)
    b_only = sum(1 for a, b in pairs if b and not a)
    neither = n - both - a_only - b_only
    p_value = mcnemar_exact(a_only, b_only)
    if n == 0:
        return PairedComparison(0, None, None, None, -1.0, 1.0, 0, 0, p_value, level)
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson(both + a_only, n, z)
    l2, u2 = wilson(both + b_only, n, z)
    phi = _phi(both, a_only, b_only, neither)
    diff = p1 - p2
    # max(0, ...) guards a rounding-negative radicand when both intervals collapse onto their estimates.
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return PairedComparison(n, p1, p2, diff, max(-1.0, low), min(1.0, high), a_only, b_only, p_value, level)


def half_width(n: int, rate: float, z: float = Z95) -> float:
    """Half the width of the Wilson interval expected from n trials at an assumed pass rate.

    Uses the expected successes n * rate unrounded, so the answer varies smoothly with n and rate.

    Args:
        n: Planned number of trials.
        rate: Assumed true pass rate in [0, 1].
        z: Normal quantile of the confidence level (default 95%).

    Returns:
        The half-width; 0.5 (the whole unit interval) when n <= 0.

    Raises:
        ValueError: If rate is outside [0, 1].
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if n <= 0:
        return 0.5
    low, high = wilson(n * rate, n, z)
    return (high - low) / 2


def decidable(n: int, rate: float, threshold: float, z: float = Z95) -> bool:
    """Whether n trials at an assumed pass rate would decide a minimum-pass-rate rule.

    Mirrors the rule check in analyse: a rule holds when the lower bound reaches the threshold and fails when
    the upper bound is below it; anything else is inconclusive.

    Args:
        n: Planned number of trials.
        rate: Assumed true pass rate in [0, 1].
        threshold: The rule's minimum pass rate.
        z: Normal quantile of the confidence level (default 95%).

    Returns:
        True when the expected Wilson interval lies entirely on one side of the threshold.

    Raises:
        ValueError: If rate is outside [0, 1].
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if n <= 0:
        return False
    low, high = wilson(n * rate, n, z)
    return low >= threshold or high < threshold


def attack_success(successes: int, attempts: int, errors: int) -> tuple[float | None, float | None]:
    """Attack-success rates over decided attempts and over all attempts.

    Args:
        successes: Attempts where the attack succeeded.
        attempts: All attempts, including those that ended in an error.
        errors: Attempts with no gradable reply; they count as not successful in the second rate.

    Returns:
        (successes / (attempts - errors), successes / attempts), each None when its denominator is 0.

    Raises:
        ValueError: If a count is negative, errors exceed attempts, or successes exceed decided attempts.
    """
    decided = attempts - errors
    if min(successes, attempts, errors) < 0 or decided < 0 or successes > decided:
        raise ValueError(
            f"need 0 <= successes <= attempts - errors, got successes={successes}, attempts={attempts}, errors={errors}"
        )
    return (successes / decided if decided else None), (successes / attempts if attempts else None)


def lift(attack_rate: float | None, baseline_rate: float | None) -> float | None:
    """How much an attack raises the success rate over asking directly.

    Args:
        attack_rate: Success rate with the attack applied.
        baseline_rate: Success rate of the same requests asked directly.

    Returns:
        attack_rate - baseline_rate, or None when either rate is undefined.
    """
    if attack_rate is None or baseline_rate is None:
        return None
    return attack_rate - baseline_rate


@lru_cache(maxsize=4096)
def allowed_failures(n: int, threshold: float, z: float = Z95) -> int:
    """The most failures among n decided trials with which a minimum-pass-rate rule still holds (the Wilson lower
    bound of the pass rate at or above `threshold`); -1 when even n passes out of n do not reach it."""
    low, high = -1, n  # the lower bound falls as failures rise: search for the last k at which it holds
    while low < high:
        k = (low + high + 1) // 2
        if wilson(n - k, n, z)[0] >= threshold:
            low = k
        else:
            high = k - 1
    return low


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (stable for thousands of trials)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k + 1)]  # fmt: skip
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def tolerated_false_fail(n: int, threshold: float, approve: float = 0.5) -> float:
    """The per-trial false-fail rate of a grader at which a perfect model (every reply truly passes) is still
    approved by a rule with probability `approve`: the largest f with P(Binomial(n, f) <= allowed failures) >=
    approve, by bisection. 0 when the rule cannot hold at all with n trials."""
    k = allowed_failures(n, threshold)
    if k < 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if binomial_cdf(k, n, mid) >= approve:
            low = mid
        else:
            high = mid
    return low


def trials_to_decide(rate: float, threshold: float, limit: int = 100_000) -> int | None:
    """The fewest trials whose expected Wilson interval at an assumed pass rate lies wholly on one side of the
    threshold (None when even `limit` trials cannot, e.g. a rate equal to the threshold)."""
    if decidable(limit, rate, threshold) is False:
        return None
    low, high = 1, limit
    while low < high:
        mid = (low + high) // 2
        if decidable(mid, rate, threshold):
            high = mid
        else:
            low = mid + 1
    return low
