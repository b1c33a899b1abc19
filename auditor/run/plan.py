"""Expands a suite and its targets into work items: every probe variant x sample x target."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from auditor.records import Attack, Message, Probe, Suite, Target, WorkItem
from auditor.stats import decidable, half_width
from auditor.suite.attacks import DIRECT, transform
from auditor.suite.load import PLACEHOLDER, variants

HASH_VERSION = "auditor-item/1"
DIRECT_ATTACK = Attack(DIRECT, DIRECT, "baseline", {})


def request_hash(
    target: Target,
    messages: tuple[Message, ...],
    params: dict[str, Any],
    sample: int,
    turns: tuple[str, ...] = (),
    api: str = "chat",
) -> str:
    """The identity of one request: endpoint, model, messages, parameters and sample index (and the scripted turns
    and the endpoint kind where they apply). The cache, resume and de-duplication all key on it, for audited models
    and judges alike, so it is built here only."""
    request: dict[str, Any] = {
        "endpoint": target.base_url,
        "model": target.model,
        "messages": [[m.role, m.content] for m in messages],
        "params": params,
        "sample": sample,
    }
    if turns:
        request["turns"] = list(turns)
    if api != "chat":
        request["api"] = api
    return content_hash(request)


def content_hash(value: Any) -> str:
    """SHA-256 (first 32 hex digits) of canonical JSON with a version prefix."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{HASH_VERSION}\n{canonical}".encode()).hexdigest()[:32]


def _fill(text: str, bindings: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: bindings.get(m.group(1), m.group(0)), text)


def messages_for(probe: Probe, target: Target, bindings: dict[str, str]) -> tuple[Message, ...]:
    """The exact messages sent: the target's deployment prompt, then the probe's system prompt and turns."""
    system = [s for s in (target.system_prompt, probe.system) if s]
    head = (Message("system", _fill("\n\n".join(system), bindings)),) if system else ()
    return head + tuple(Message(m.role, _fill(m.content, bindings)) for m in probe.messages)


def attacked(
    messages: tuple[Message, ...], attack: Attack, probe: Probe, bindings: dict[str, str]
) -> tuple[Message, ...] | None:
    """The messages with the attack applied to the last user message, or None where the attack does not apply."""
    last = len(messages) - 1
    result = transform(attack, probe, messages[last].content)
    if result is None:
        return None
    history, text = result
    return messages[:last] + history + (Message("user", _fill(text, bindings)),)


def attacks_for(suite: Suite, probe: Probe) -> list[Attack]:
    """The attacks a probe runs under, direct first; adaptive attacks are left to the adaptive stage."""
    chosen = [a for a in suite.attacks if "*" in probe.attacks or a.id in probe.attacks]
    return [DIRECT_ATTACK] + [a for a in chosen if not a.adaptive]


def params_for(probe: Probe, target: Target, sample: int) -> dict[str, Any]:
    """Generation parameters: the target's defaults, overridden by the suite's; seed + sample index."""
    params = {**dict(target.params), **dict(probe.params)}
    if "seed" in params:
        params["seed"] = int(params["seed"]) + sample
    return params


def plan(suite: Suite, targets: list[Target]) -> Iterator[WorkItem]:
    """Yield the suite's work items, ordered by target, challenge, probe, attack, variant and sample."""
    for target in targets:
        for challenge, probe in suite.probes():
            for attack in attacks_for(suite, probe):
                for variant, bindings in enumerate(variants(probe)):
                    base = messages_for(probe, target, dict(bindings))
                    messages = base if attack.id == DIRECT else attacked(base, attack, probe, dict(bindings))
                    if messages is None:
                        continue
                    turns = tuple(_fill(t, dict(bindings)) for t in probe.turns)
                    for sample in range(probe.samples):
                        yield _item(target, challenge.id, probe, attack.id, variant, bindings, sample, messages, turns)


def _item(
    target: Target,
    challenge_id: str,
    probe: Probe,
    attack: str,
    variant: int,
    bindings: tuple[tuple[str, str], ...],
    sample: int,
    messages: tuple[Message, ...],
    turns: tuple[str, ...],
) -> WorkItem:
    params = params_for(probe, target, sample)
    hashed = request_hash(target, messages, params, sample, turns)
    identity: dict[str, Any] = {
        "request": hashed,
        "target": target.name,
        "challenge": challenge_id,
        "probe": probe.id,
        "variant": variant,
    }
    if attack != DIRECT:
        identity["attack"] = attack
    return WorkItem(
        item_id=content_hash(identity),
        request_hash=hashed,
        target=target.name,
        challenge_id=challenge_id,
        probe_id=probe.id,
        variant=variant,
        variables=bindings,
        sample=sample,
        messages=messages,
        params=tuple(sorted(params.items())),
        attack=attack,
        category=probe.category,
        turns=turns,
        fresh=probe.fresh,
    )


def requests_per_target(suite: Suite) -> int:
    """How many requests the suite's static plan sends to each target."""
    return sum(len(variants(p)) * p.samples * len(attacks_for(suite, p)) for _, p in suite.probes())


ASSUMED_MAX_TOKENS = 1024


def estimate_tokens(item: WorkItem) -> tuple[int, int]:
    """A cautious estimate of an item's prompt tokens (one per 3 bytes, plus 4 per message) and its
    completion ceiling (max_tokens, or ASSUMED_MAX_TOKENS when the suite sets none)."""
    prompt = sum(len(m.content.encode()) for m in item.messages) // 3 + 4 * len(item.messages) + 3
    ceiling = dict(item.params).get("max_tokens") or ASSUMED_MAX_TOKENS
    return prompt, int(ceiling)


@dataclass(frozen=True)
class RulePlan:
    """What one rule can decide over one of its cells (a challenge, or an attack, family, category or probe)."""

    rule: str  # policy/rule
    cell: str
    trials: int
    threshold: float
    allowed_failures: int  # -1: the rule cannot hold with these trials
    tolerated_false_fail: float  # a grader false-fail rate at which a perfect model is approved half the time
    decidable: bool
    trials_needed: int | None  # to decide at the assumed rate; None if no number of trials would


@dataclass(frozen=True)
class SamplePlan:
    """What a challenge's planned trials can decide at an assumed pass rate."""

    challenge_id: str
    trials: int
    half_width: float
    undecidable: tuple[str, ...]  # rules (policy/rule, minimum) the trials cannot decide
    rules: tuple[RulePlan, ...] = ()


def _cell_trials(suite: Suite, challenge: Any, per: str) -> dict[str, int]:
    """Planned trials per target in each cell of a challenge for a rule's `per`."""
    families = {a.id: a.family for a in suite.attacks}
    cells: dict[str, int] = {}
    for probe in challenge.probes:
        for attack in attacks_for(suite, probe):
            n = len(variants(probe)) * probe.samples
            key = {
                "challenge": challenge.id,
                "attack": f"attack {attack.id}",
                "family": f"family {families.get(attack.id, attack.id)}",
                "category": f"category {probe.category or 'uncategorised'}",
                "probe": f"probe {probe.id}",
            }[per]
            cells[key] = cells.get(key, 0) + n
    return cells


def sample_plan(suite: Suite, assumed_rate: float) -> list[SamplePlan]:
    """Per measured challenge: trials per target, the 95% interval half-width at `assumed_rate`, the policy rules
    whose threshold that many trials could not decide, and per rule and cell the failures it tolerates, the grader
    false-fail rate at which a perfect model stops being approved, and the trials that would decide it."""
    from auditor.stats import allowed_failures, tolerated_false_fail, trials_to_decide

    out = []
    for challenge in suite.challenges:
        if not challenge.measured:
            continue
        trials = sum(len(variants(p)) * p.samples * len(attacks_for(suite, p)) for p in challenge.probes)
        rules = []
        for policy in suite.policies:
            for rule in policy.rules:
                if not rule.selects(challenge):
                    continue
                for cell, n in sorted(_cell_trials(suite, challenge, rule.per).items()):
                    rules.append(
                        RulePlan(
                            f"{policy.id}/{rule.id}",
                            cell,
                            n,
                            rule.min_pass_rate,
                            allowed_failures(n, rule.min_pass_rate),
                            tolerated_false_fail(n, rule.min_pass_rate),
                            decidable(n, assumed_rate, rule.min_pass_rate),
                            trials_to_decide(assumed_rate, rule.min_pass_rate),
                        )
                    )
        blocked = tuple(dict.fromkeys(f"{r.rule} (minimum {r.threshold:.0%})" for r in rules if not r.decidable))
        out.append(SamplePlan(challenge.id, trials, half_width(trials, assumed_rate), blocked, tuple(rules)))
    return out
