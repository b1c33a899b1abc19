"""The consistency criterion: replies to one probe (its samples, variants or both) agree on one answer.

It is decided over a set of replies, not one: a reply passes when it gives the set's most common answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

from auditor.criteria.registry import Ask, Check, CriterionError, criterion
from auditor.records import Grade, Reply


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


def _answer(text: str, pattern: re.Pattern[str] | None, measure: str) -> str | None:
    if pattern is not None:
        m = pattern.search(text)
        if not m:
            return None
        text = m.group(1) if m.groups() else m.group(0)
    if measure == "identical":
        return text
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def consistency_outcomes(spec: dict[str, Any], replies: list[str]) -> list[Grade]:
    """Grade a set of replies to one probe for consistency: a reply passes when it gives the set's most common
    answer (after the criterion's `extract` and normalisation); the evidence gives the agreement and the number
    of distinct answers."""
    _, measure, pattern = consistency_settings(spec)
    if len(replies) < 2:
        return [Grade("error", "too few replies to compare") for _ in replies]
    answers = [_answer(text, pattern, measure) for text in replies]
    counted = Counter(a for a in answers if a is not None)
    modal = min(counted.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counted else None
    agree = counted[modal] if modal is not None else 0
    summary = f"{agree} of {len(replies)} replies agree; {len(counted)} distinct answers"
    grades = []
    for answer in answers:
        if answer is None:
            grades.append(Grade("fail", f"no answer found by the extract pattern; {summary}"))
        else:
            grades.append(Grade("pass" if answer == modal else "fail", f"answer '{answer[:40]}'; {summary}"))
    return grades
