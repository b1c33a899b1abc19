"""Criteria on numbers, similarity and recorded usage (latency, tokens, cost), and consistency across replies."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from auditor.checks import Ask, Check, CriterionError, criterion, show
from auditor.records import Grade, Reply

# --- numbers, similarity and recorded usage ----------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _numbers(text: str) -> list[float]:
    found = []
    for token in _NUMBER.findall(text):
        try:
            found.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return found


@criterion("number")
def _number(spec: dict[str, Any], pointer: str) -> Check:
    try:
        want = float(spec["value"])
        tolerance = float(spec.get("tolerance", 0))
    except (KeyError, TypeError, ValueError):
        raise CriterionError(pointer + "/value", "needs a numeric value (and a numeric tolerance)") from None
    relative = bool(spec.get("relative", False))
    pick = spec.get("pick", "first")

    def close(x: float) -> bool:
        allowed = tolerance * abs(want) if relative else tolerance
        return abs(x - want) <= allowed + 1e-12

    def check(reply: Reply, ask: Ask) -> Grade:
        found = _numbers(reply.content)
        if not found:
            return Grade("fail", "no number in the reply")
        candidates = found[:1] if pick == "first" else found
        hits = [x for x in candidates if close(x)]
        if hits:
            return Grade("pass", f"{hits[0]:g} is within {tolerance:g}{' (relative)' if relative else ''} of {want:g}")
        return Grade("fail", f"{candidates[0]:g} is not within {tolerance:g} of {want:g}")

    return check


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def token_f1(a: str, b: str) -> float:
    """Token-overlap F1 between two short answers (SQuAD-style, no stemming)."""
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum(min(ta.count(t), tb.count(t)) for t in set(ta))
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


@criterion("similar")
def _similar(spec: dict[str, Any], pointer: str) -> Check:
    value = spec.get("value")
    if not isinstance(value, str) or not value:
        raise CriterionError(pointer + "/value", "needs the reference answer as a non-empty string")
    minimum = float(spec.get("min", 0.8))
    method = spec.get("method", "token_f1")

    def score(text: str) -> float:
        if method == "ratio":
            return difflib.SequenceMatcher(None, text.casefold().strip(), value.casefold().strip()).ratio()
        return token_f1(text, value)

    def check(reply: Reply, ask: Ask) -> Grade:
        got = score(reply.content)
        outcome = "pass" if got >= minimum else "fail"
        return Grade(outcome, f"{method} similarity {got:.2f} to '{show(value)}' (minimum {minimum:.2f})")

    return check


def _ceiling(spec: dict[str, Any], pointer: str, key: str) -> float:
    try:
        return float(spec[key])
    except (KeyError, TypeError, ValueError):
        raise CriterionError(pointer + "/" + key, f"needs a numeric '{key}'") from None


def _at_most(
    spec: dict[str, Any],
    pointer: str,
    key: str,
    measure: Callable[[Reply], float | None],
    describe: Callable[[float, float], str],
    missing: str,
) -> Check:
    """A check that a recorded figure of the reply stays at or under the spec's ceiling `key`."""
    ceiling = _ceiling(spec, pointer, key)

    def check(reply: Reply, ask: Ask) -> Grade:
        value = measure(reply)
        if value is None:
            return Grade("error", missing)
        return Grade("pass" if value <= ceiling else "fail", describe(value, ceiling))

    return check


@criterion("latency")
def _latency(spec: dict[str, Any], pointer: str) -> Check:
    return _at_most(
        spec, pointer, "max_s", lambda r: r.latency_s, lambda v, c: f"latency {v:.2f} s (maximum {c:g} s)", ""
    )


@criterion("output_tokens")
def _output_tokens(spec: dict[str, Any], pointer: str) -> Check:
    return _at_most(
        spec,
        pointer,
        "max",
        lambda r: r.completion_tokens,
        lambda v, c: f"{v:g} output tokens (maximum {c:g})",
        "the endpoint reported no token usage",
    )


@criterion("cost")
def _cost(spec: dict[str, Any], pointer: str) -> Check:
    return _at_most(
        spec,
        pointer,
        "max_usd",
        lambda r: r.cost_usd,
        lambda v, c: f"cost ${v:.6f} (maximum ${c:g})",
        "no prices declared for this target, or no token usage reported",
    )


@criterion("consistency")
def _consistency(spec: dict[str, Any], pointer: str) -> Check:
    """Checked over a probe's set of replies by the grade stage; on a single reply it cannot be decided."""
    if pointer.count("/pass_if") and not pointer.endswith("/pass_if"):
        raise CriterionError(pointer, "consistency must be a probe's top-level pass_if, not inside a combinator")
    consistency_settings(spec, pointer)

    def check(reply: Reply, ask: Ask) -> Grade:
        return Grade("error", "consistency is decided over a set of replies")

    return check


def consistency_settings(spec: dict[str, Any], pointer: str = "") -> tuple[str, str, re.Pattern[str] | None]:
    """The (over, measure, extract pattern) of a consistency criterion."""
    extract = spec.get("extract")
    try:
        pattern = re.compile(extract, re.IGNORECASE | re.DOTALL) if extract else None
    except re.error as exc:
        raise CriterionError(pointer + "/extract", f"not a valid regular expression: {exc}") from None
    return spec.get("over", "samples"), spec.get("measure", "agreement"), pattern
