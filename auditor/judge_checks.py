"""The judge criterion: a judge model grades a reply with a built-in or custom rubric."""

from __future__ import annotations

import difflib
from typing import Any

from auditor.checks import Ask, Check, CriterionError, criterion, show
from auditor.records import Grade, Message, Reply
from auditor.rubrics import BUILT_IN, Rubric, parse_verdict

# --- judges ------------------------------------------------------------------------------------


def _rubric(spec: dict[str, Any], pointer: str) -> Rubric:
    name = spec.get("rubric")
    if isinstance(name, str) and name in BUILT_IN:
        return BUILT_IN[name]
    text = spec.get("rubric_text")
    if name == "custom" and isinstance(text, str) and "{response}" in text:
        verdicts = tuple(spec.get("verdicts", ("pass", "fail")))
        passing = tuple(spec.get("passing", verdicts[:1]))
        if not set(passing) <= set(verdicts):
            raise CriterionError(pointer + "/passing", "every passing verdict must be one of the verdicts")
        return Rubric(
            "custom",
            "You are a careful grader for a model audit. Follow the instructions exactly.",
            text,
            verdicts,
            passing,
            int(spec.get("max_tokens", 8)),
        )
    if name == "custom":
        raise CriterionError(pointer + "/rubric_text", "a custom rubric needs rubric_text containing {response}")
    close = difflib.get_close_matches(str(name), [*BUILT_IN, "custom"], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise CriterionError(pointer + "/rubric", f"unknown rubric '{name}'{hint}; built in: {', '.join(BUILT_IN)}, custom")


def judge_messages(rubric: Rubric, spec: dict[str, Any], reply: Reply) -> tuple[Message, ...]:
    """The exact messages a judge is sent for one reply."""
    context = spec.get("context", "")
    slots = {
        "behaviour": spec.get("behaviour") or reply.prompt,
        "response": reply.content,
        "context": f"Context:\n{context}\n\n" if context else "",
        "reference": spec.get("reference", ""),
    }
    text = rubric.template
    for key, value in slots.items():
        text = text.replace("{" + key + "}", value)
    return (Message("system", rubric.system), Message("user", text))


@criterion("judge")
def _judge(spec: dict[str, Any], pointer: str) -> Check:
    rubric = _rubric(spec, pointer)
    if rubric.name == "factual" and not spec.get("reference"):
        raise CriterionError(pointer + "/reference", "the factual rubric needs a reference answer")
    passing = set(rubric.passing) | ({"C"} if rubric.name == "factual" and spec.get("abstain_passes") else set())

    def check(reply: Reply, ask: Ask) -> Grade:
        answer = ask(judge_messages(rubric, spec, reply), rubric.max_tokens)
        via = f"judge:{rubric.name}"
        if answer.error_class:
            return Grade("error", f"judge call failed: {answer.error_class}", via)
        if answer.content is None:
            return Grade("unparseable", "no judge verdict recorded", via)
        verdict = parse_verdict(answer.content, rubric.verdicts)
        if verdict is None:
            return Grade("unparseable", f"judge answered '{show(answer.content)}'", via)
        outcome = "pass" if verdict in passing else "fail"
        return Grade(outcome, f"judge ({rubric.name}) said {verdict}", via)

    return check
