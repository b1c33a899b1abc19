"""Criteria on numbers, similarity and recorded usage (latency, tokens, cost), and consistency across replies."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from auditor.criteria.registry import Ask, Check, CriterionError, criterion, show
from auditor.records import Grade, Reply

# --- numbers, similarity and recorded usage ----------------------------------------------------

# A number as replies write it: 3.5, 3,5, 1,440, 299 792 458, 3 x 10^5, 3×10⁵, 3e5, or in English words.
_SUPER = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺−", "0123456789--" + "-")
_NUMBER = re.compile(
    r"(?<![\w.])(?P<num>-?(?:\d{1,3}(?:(?:,|\u202f|\u2009|\u00a0| )\d{3})+|\d+)(?:[.,]\d+)?)"
    r"(?:\s*(?:[x×*·]\s*10\s*(?:\^|\*\*)?\s*(?P<exp>[-+−]?\d+|[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)|[eE](?P<e>[-+]?\d+)))?"
)
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split()
)}  # fmt: skip
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_WORD = re.compile(r"[a-z]+", re.IGNORECASE)


def _digits(token: str, exponent: str | None) -> float | None:
    token = re.sub(r"[\u202f\u2009\u00a0 ]", "", token)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", token):
        token = token.replace(",", "")  # 1,440: thousands
    elif token.count(",") == 1 and "." not in token:
        token = token.replace(",", ".")  # 8848,86: a decimal comma
    try:
        value = float(token)
        return value * 10 ** int(exponent.translate(_SUPER)) if exponent else value
    except (ValueError, OverflowError):
        return None


def _word_numbers(text: str) -> list[tuple[int, float]]:
    """(position, value) of numbers written in English words: eleven, forty-two, one thousand four hundred."""
    found: list[tuple[int, float]] = []
    words = [(m.start(), m.group(0).lower()) for m in _WORD.finditer(text.replace("-", " "))]
    i = 0
    while i < len(words):
        start, total, current, used = words[i][0], 0, 0, 0
        while i < len(words):
            w = words[i][1]
            if w in _UNITS:
                current += _UNITS[w]
            elif w in _TENS:
                current += _TENS[w]
            elif w in _SCALES and (current or total):
                current = max(current, 1) * _SCALES[w]
                if _SCALES[w] >= 1000:
                    total, current = total + current, 0
            elif w == "and" and used and i + 1 < len(words) and words[i + 1][1] in {**_UNITS, **_TENS}:
                pass
            else:
                break
            used += 1
            i += 1
        if used:
            found.append((start, float(total + current)))
        else:
            i += 1
    return found


def _numbers(text: str) -> list[float]:
    """Every number in the text, in reading order: digits (with thousands separators, decimal commas and
    scientific notation such as 3 x 10^5) and English number words."""
    found = []
    for m in _NUMBER.finditer(text):
        value = _digits(m.group("num"), m.group("exp") or m.group("e"))
        if value is not None:
            found.append((m.start(), value))
    found += _word_numbers(text)
    return [v for _, v in sorted(found, key=lambda pv: pv[0])]


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
        candidates = found[:1] if pick == "first" else found[-1:] if pick == "last" else found
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
