"""Grades a suite's labelled examples with their probes' own criteria, so a criterion that misjudges realistic
replies is caught before a paid run. Judge criteria are checked through their fallback (what grades without a
judge); a judge criterion with no fallback cannot be checked offline and is counted apart."""

from __future__ import annotations

from dataclasses import dataclass

from auditor import criteria
from auditor.criteria import consistency_outcomes, needs_judge, without_judge
from auditor.records import Probe, ProbeExample, Reply, Suite
from auditor.suite.load import PLACEHOLDER, variants


@dataclass(frozen=True)
class Misgrade:
    """An example its criterion grades differently from the label a person gave it."""

    pointer: str
    probe_id: str
    expect: str
    got: str
    evidence: str
    reply: str


@dataclass(frozen=True)
class ExampleCheck:
    """What checking a suite's examples found."""

    checked: int  # replies graded
    judge_only: int  # replies only a judge decides (skipped)
    unchecked: int  # replies of probes whose judge criterion has no fallback (need a judge)
    misgrades: tuple[Misgrade, ...]


def prompt_of(probe: Probe, example: ProbeExample) -> str:
    """The last user message the example's reply answers, with the example's variant filled in."""
    combos = variants(probe)
    chosen = combos[0] if combos else ()
    given = dict(example.variables)
    for combo in combos:
        bound = dict(combo)
        values = dict(probe.variables)
        if all(bound[k] == (values[k][v] if isinstance(v, int) else v) for k, v in given.items()):
            chosen = combo
            break
    user = [m.content for m in probe.messages if m.role == "user"] or list(probe.turns[-1:])
    text = user[-1] if user else ""
    bindings = dict(chosen)
    return PLACEHOLDER.sub(lambda m: bindings.get(m.group(1), m.group(0)), text)


def check_examples(suite: Suite) -> ExampleCheck:
    """Grade every example of every probe; return the counts and the misgrades (with JSON pointers)."""
    checked = skipped = unchecked = 0
    misgrades: list[Misgrade] = []
    for ci, challenge in enumerate(suite.challenges):
        for pi, probe in enumerate(challenge.probes):
            if not probe.examples:
                continue
            if needs_judge(probe.pass_if.spec):
                unchecked += sum(len(e.replies) for e in probe.examples)
                continue
            spec = without_judge(probe.pass_if.spec)
            check = criteria.build(spec) if spec.get("type") != "consistency" else None
            for k, example in enumerate(probe.examples):
                if example.judge_only:
                    skipped += len(example.replies)
                    continue
                prompt = prompt_of(probe, example)
                if check is None:
                    got = consistency_outcomes(spec, list(example.replies))
                else:
                    got = [
                        check(
                            Reply(
                                content=reply,
                                prompt=prompt,
                                latency_s=example.latency_s or 0.0,
                                completion_tokens=example.completion_tokens,
                            ),
                            criteria.no_judge,
                        )
                        for reply in example.replies
                    ]
                for reply, expect, grade in zip(example.replies, example.expect, got):
                    checked += 1
                    if grade.outcome != expect:
                        where = f"/challenges/{ci}/probes/{pi}/examples/{k}"
                        misgrades.append(Misgrade(where, probe.id, expect, grade.outcome, grade.evidence, reply))
    return ExampleCheck(checked, skipped, unchecked, tuple(misgrades))
