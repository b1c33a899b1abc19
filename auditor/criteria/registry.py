"""The criterion registry: grader factories register here by type name, and build() makes a check from a spec.

Each factory takes the criterion's JSON object and returns a check from a Reply (and a way to ask
a judge model) to a Grade. A factory raises CriterionError for bad parameters, so a broken criterion
stops the suite at load time, not halfway through a paid run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auditor.records import Grade, Message, Reply


@dataclass(frozen=True)
class JudgeAnswer:
    """A judge's raw answer, or the error class when the judge call failed, or neither if not asked yet."""

    content: str | None
    error_class: str | None = None


# Ask a judge: messages and a token ceiling in, its answer out.
Ask = Callable[[tuple[Message, ...], int], JudgeAnswer]
Check = Callable[[Reply, Ask], Grade]
Factory = Callable[[dict[str, Any], str], Check]


def no_judge(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
    """The Ask used when no judge is available: every judge criterion becomes an error."""
    return JudgeAnswer(None, "no_judge")


REGISTRY: dict[str, Factory] = {}


class CriterionError(ValueError):
    """A criterion with bad parameters; `pointer` is relative to the criterion."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer


def criterion(kind: str) -> Callable[[Factory], Factory]:
    """Register a grader factory under a criterion type name."""

    def register(factory: Factory) -> Factory:
        REGISTRY[kind] = factory
        return factory

    return register


def build(spec: dict[str, Any], pointer: str = "") -> Check:
    """Build the check for a criterion object, raising CriterionError on bad parameters."""
    kind = spec.get("type")
    if kind not in REGISTRY:
        raise CriterionError(pointer + "/type", f"unknown criterion type '{kind}'")
    return REGISTRY[kind](spec, pointer)


def show(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
