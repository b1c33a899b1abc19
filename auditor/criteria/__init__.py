"""Pass criteria: the registry with every criterion kind loaded, and the names the rest of the program uses.

registry     the registry, build(), the Ask a judge criterion calls
text         refusal, contains, not_contains, regex, equals, is_json, no_leak, all / any / not
usage        number, similar, latency, output_tokens, cost
consistency  agreement across a probe's replies
judge        judge criteria (chat judges with rubrics, classifier judges) and what a spec needs of a judge
rubrics      the built-in judge rubrics and their verdict parsers
refusal      the refusal detector
"""

from __future__ import annotations

from auditor.criteria import consistency, judge, text, usage
from auditor.criteria.consistency import consistency_outcomes, consistency_settings
from auditor.criteria.judge import needs_judge, uses_judge, without_judge
from auditor.criteria.refusal import detect_refusal
from auditor.criteria.registry import (
    REGISTRY,
    Ask,
    Check,
    CriterionError,
    JudgeAnswer,
    build,
    criterion,
    no_judge,
)
from auditor.criteria.usage import token_f1

LOADED = (consistency, judge, text, usage)  # importing them fills REGISTRY

__all__ = [
    "REGISTRY", "Ask", "Check", "CriterionError", "JudgeAnswer", "build", "criterion", "no_judge",
    "detect_refusal", "consistency_outcomes", "consistency_settings", "needs_judge", "uses_judge", "without_judge",
    "token_f1",
]  # fmt: skip
