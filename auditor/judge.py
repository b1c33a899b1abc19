"""Grades a run, sending the judge requests its judge criteria need and storing them like responses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from auditor import cache, grade
from auditor.criteria import JudgeAnswer
from auditor.execute import Endpoint, Executor
from auditor.plan import content_hash
from auditor.records import Completion, Message, Suite, Target, WorkItem
from auditor.store import ResponseWriter, RunDir

JUDGE_PARAMS = {"temperature": 0.0, "seed": 0}
Connect = Callable[[list[Target]], AbstractContextManager[dict[str, Endpoint]]]


def judge_item(judge: Target, messages: tuple[Message, ...], max_tokens: int, about: dict[str, Any]) -> WorkItem:
    """The work item for one judge request; its id is the request's content hash."""
    params = {**JUDGE_PARAMS, "max_tokens": max_tokens}
    request_hash = content_hash(
        {
            "endpoint": judge.base_url,
            "model": judge.model,
            "messages": [[m.role, m.content] for m in messages],
            "params": params,
            "sample": 0,
        }
    )
    return WorkItem(
        item_id=request_hash,
        request_hash=request_hash,
        target=judge.name,
        challenge_id=about["challenge_id"],
        probe_id=about["probe_id"],
        variant=about["variant"],
        variables=(),
        sample=about["sample"],
        messages=messages,
        params=tuple(sorted(params.items())),
        attack=about.get("attack") or "direct",
        category=about.get("category"),
    )


def _stored(run: RunDir) -> dict[str, JudgeAnswer]:
    rows = run.read_parts(["request_hash", "content", "error_class"], "judgements")
    return {r["request_hash"]: JudgeAnswer(r["content"], r["error_class"]) for r in rows}


def grade_with_judge(
    run: RunDir,
    suite: Suite,
    targets: dict[str, Target],
    judge: Target | None,
    connect: Connect,
) -> list[dict[str, Any]]:
    """Grade every stored response of a run; judge requests not stored yet are sent to `judge`."""
    responses = run.read_parts(grade.COLUMNS)
    wanted: dict[str, WorkItem] = {}
    current: dict[str, Any] = {}

    def record(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        if judge is None:
            return JudgeAnswer(None, "no_judge")
        item = judge_item(judge, messages, max_tokens, current)
        wanted.setdefault(item.request_hash, item)
        return JudgeAnswer(None)

    def remember(row: dict[str, Any]) -> None:
        current.clear()
        current.update(row)

    if any(grade.uses_judge(p.pass_if.spec) for _, p in suite.probes()):
        # first pass: learn which judge requests are needed
        grade.grade_rows(run.run_id, responses, suite, targets, record, on_row=remember)
    answers = _stored(run)
    missing = [item for h, item in wanted.items() if h not in answers]
    if missing and judge is not None:
        answers.update(_send(run, judge, missing, connect))

    def lookup(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        if judge is None:
            return JudgeAnswer(None, "no_judge")
        item = judge_item(judge, messages, max_tokens, {"challenge_id": "", "probe_id": "", "variant": 0, "sample": 0})
        return answers.get(item.request_hash, JudgeAnswer(None, "judge_not_called"))

    return grade.grade_rows(run.run_id, responses, suite, targets, lookup, judge.name if judge else None)


def _send(run: RunDir, judge: Target, items: list[WorkItem], connect: Connect) -> dict[str, JudgeAnswer]:
    """Reuse judge answers stored anywhere in the archive; send the rest; store all under the run."""
    writer = ResponseWriter(run, folder="judgements")
    answers: dict[str, JudgeAnswer] = {}

    def keep(item: WorkItem, c: Completion, cached: bool) -> None:
        writer.add(item, c, cached=cached)
        answers[item.request_hash] = JudgeAnswer(c.content, c.error_class)

    hits = cache.lookup(run.path.parents[1], items, view="judgements")
    for item in items:
        if item.request_hash in hits:
            keep(item, hits[item.request_hash], True)
    todo = [i for i in items if i.request_hash not in hits]
    try:
        if todo:
            with connect([judge]) as endpoints:
                executor = Executor(endpoints, lambda item, c: keep(item, c, False))
                asyncio.run(executor.run(todo))
    finally:
        writer.flush()
    return answers
