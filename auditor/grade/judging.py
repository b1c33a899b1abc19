"""Grades a run, sending the judge requests its judge criteria need and storing them like responses.

A judge is a chat model, or a classifier (its target's `classifier`): a yes/no classifier on the completions
endpoint or a Llama-Guard-style chat classifier. Either way its calls are stored in the `judgements` view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from auditor import criteria
from auditor.archive import cache
from auditor.archive.store import ResponseWriter, RunDir
from auditor.criteria import JudgeAnswer
from auditor.criteria.judge import ClassifierJudge, unsupported
from auditor.criteria.registry import Ask
from auditor.criteria.rubrics import CLASSIFIER_RUBRICS
from auditor.errors import UsageError
from auditor.grade import rows as grade
from auditor.records import Completion, Message, Suite, Target, WorkItem
from auditor.run.endpoint import Endpoint
from auditor.run.execute import Executor
from auditor.run.plan import request_hash

JUDGE_PARAMS = {"temperature": 0.0, "seed": 0}
COMPLETION_PARAMS = {"temperature": 0.0}  # the completions body: model, prompt, max_tokens, temperature
Connect = Callable[[list[Target]], AbstractContextManager[dict[str, Endpoint]]]


def _endpoint(judge: Target) -> str:
    """Which endpoint a judge is called on: completions for a completion classifier, else chat."""
    return "completions" if dict(judge.classifier).get("type") == "completion" else "chat"


def judge_item(judge: Target, messages: tuple[Message, ...], max_tokens: int, about: dict[str, Any]) -> WorkItem:
    """The work item for one judge request; its id is the request's content hash.

    A completions request (its prompt stored as the one user message) hashes with its endpoint kind, so it never
    shares a hash with a chat request carrying the same text; chat requests hash as they always have.
    """
    endpoint = _endpoint(judge)
    params = {**(COMPLETION_PARAMS if endpoint == "completions" else JUDGE_PARAMS), "max_tokens": max_tokens}
    hashed = request_hash(judge, messages, params, 0, api=endpoint)
    return WorkItem(
        item_id=hashed,
        request_hash=hashed,
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
        endpoint=endpoint,
    )


def _judge_specs(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every judge criterion in a criterion, combinators included."""
    if spec.get("type") == "judge":
        yield spec
    of = spec.get("of")
    for child in of if isinstance(of, list) else [of] if isinstance(of, dict) else []:
        yield from _judge_specs(child)


def check_judge(suite: Suite, judge: Target | None) -> None:
    """Raise UsageError (one line) if `judge` is a classifier and a judge criterion of the suite uses a rubric a
    classifier cannot grade; called before any judge request is sent."""
    if judge is None or not judge.classifier:
        return
    kind = str(dict(judge.classifier)["type"])
    for challenge, probe in suite.probes():
        for spec in _judge_specs(probe.pass_if.spec):
            rubric = str(spec.get("rubric"))
            if rubric not in CLASSIFIER_RUBRICS:
                raise UsageError(
                    f"probe '{probe.id}' (challenge '{challenge.id}'): {unsupported(rubric, judge.name, kind)}; "
                    "name a chat judge with --judge"
                )


def _asking(judge: Target | None, send: Ask) -> Ask:
    """The Ask the criteria get: `send` itself for a chat judge, wrapped with its settings for a classifier."""
    if judge is not None and judge.classifier:
        return ClassifierJudge.of(judge.name, dict(judge.classifier), send)
    return send


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
    check_judge(suite, judge)
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

    if any(criteria.uses_judge(p.pass_if.spec) for _, p in suite.probes()):
        # first pass: learn which judge requests are needed
        grade.grade_rows(run.run_id, responses, suite, targets, _asking(judge, record), on_row=remember)
    answers = _stored(run)
    missing = [item for h, item in wanted.items() if h not in answers]
    if missing and judge is not None:
        answers.update(_send(run, judge, missing, connect))

    def lookup(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        if judge is None:
            return JudgeAnswer(None, "no_judge")
        item = judge_item(judge, messages, max_tokens, {"challenge_id": "", "probe_id": "", "variant": 0, "sample": 0})
        return answers.get(item.request_hash, JudgeAnswer(None, "judge_not_called"))

    return grade.grade_rows(
        run.run_id, responses, suite, targets, _asking(judge, lookup), judge.name if judge else None
    )


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


def judge_labelled(
    folder: RunDir,
    lset: Any,
    spec: dict[str, Any],
    judge: Target,
    connect: Connect,
    grade_items: Callable[[Any, dict[str, Any], Ask], Any],
) -> tuple[Ask, tuple[str, ...]]:
    """Ask `judge` what a judge criterion needs for every item of a labelled set (answers already stored anywhere in
    the archive are reused), storing the calls in `folder`; returns the Ask that answers from them, and the model
    names the judge endpoint returned."""
    for inner in _judge_specs(spec):
        rubric = str(inner.get("rubric"))
        if judge.classifier and rubric not in CLASSIFIER_RUBRICS:
            kind = str(dict(judge.classifier)["type"])
            raise UsageError(f"--criterion: {unsupported(rubric, judge.name, kind)}; name a chat judge with --judge")
    about = {"challenge_id": "calibration", "probe_id": "", "variant": 0, "sample": 0}
    wanted: dict[str, WorkItem] = {}

    def record(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        item = judge_item(judge, messages, max_tokens, about)
        wanted.setdefault(item.request_hash, item)
        return JudgeAnswer(None)

    grade_items(lset, spec, _asking(judge, record))
    answers = _send(folder, judge, list(wanted.values()), connect) if wanted else {}

    def lookup(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        return answers.get(judge_item(judge, messages, max_tokens, about).request_hash, JudgeAnswer(None, "no_answer"))

    models = folder.read_parts(["returned_model"], "judgements")
    return _asking(judge, lookup), tuple(sorted({m["returned_model"] for m in models if m["returned_model"]}))
