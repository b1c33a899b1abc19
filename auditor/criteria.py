"""Pass criteria: the registry with every criterion kind loaded, and the names the rest of the program uses."""

from __future__ import annotations

from auditor import judge_checks, text_checks, usage_checks
from auditor.checks import (
    REGISTRY,
    Ask,
    Check,
    CriterionError,
    JudgeAnswer,
    build,
    criterion,
    no_judge,
)
from auditor.refusal import detect_refusal
from auditor.usage_checks import consistency_settings, token_f1

LOADED = (judge_checks, text_checks, usage_checks)  # importing them fills REGISTRY

__all__ = [
    "REGISTRY", "Ask", "Check", "CriterionError", "JudgeAnswer", "build", "criterion", "no_judge",
    "detect_refusal", "consistency_settings", "token_f1",
]  # fmt: skip
