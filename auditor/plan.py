"""Expands a suite and its targets into work items: every probe variant x sample x target."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from auditor.records import Message, Probe, Suite, Target, WorkItem
from auditor.stats import decidable, half_width
from auditor.suite import PLACEHOLDER

HASH_VERSION = "auditor-item/1"


def content_hash(value: Any) -> str:
    """SHA-256 (first 32 hex digits) of canonical JSON with a version prefix."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{HASH_VERSION}\n{canonical}".encode()).hexdigest()[:32]


def variants(probe: Probe) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the probe's variable values, in declaration order (one empty one if none)."""
    names = [name for name, _ in probe.variables]
    values = [vals for _, vals in probe.variables]
    return [tuple(zip(names, combo)) for combo in itertools.product(*values)]


def _fill(text: str, bindings: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: bindings[m.group(1)], text)


def messages_for(probe: Probe, target: Target, bindings: dict[str, str]) -> tuple[Message, ...]:
    """The exact messages sent: the target's deployment prompt, then the probe's system prompt and turns."""
    system = [s for s in (target.system_prompt, probe.system) if s]
    head = (Message("system", _fill("\n\n".join(system), bindings)),) if system else ()
    return head + tuple(Message(m.role, _fill(m.content, bindings)) for m in probe.messages)


def params_for(probe: Probe, target: Target, sample: int) -> dict[str, Any]:
    """Generation parameters: the target's defaults, overridden by the suite's; seed + sample index."""
    params = {**dict(target.params), **dict(probe.params)}
    if "seed" in params:
        params["seed"] = int(params["seed"]) + sample
    return params


def plan(suite: Suite, targets: list[Target]) -> Iterator[WorkItem]:
    """Yield the suite's work items, ordered by target, challenge, probe, variant and sample."""
    for target in targets:
        for challenge, probe in suite.probes():
            for variant, bindings in enumerate(variants(probe)):
                messages = messages_for(probe, target, dict(bindings))
                for sample in range(probe.samples):
                    params = params_for(probe, target, sample)
                    request_hash = content_hash(
                        {
                            "endpoint": target.base_url,
                            "model": target.model,
                            "messages": [[m.role, m.content] for m in messages],
                            "params": params,
                            "sample": sample,
                        }
                    )
                    item_id = content_hash(
                        {
                            "request": request_hash,
                            "target": target.name,
                            "challenge": challenge.id,
                            "probe": probe.id,
                            "variant": variant,
                        }
                    )
                    yield WorkItem(
                        item_id=item_id,
                        request_hash=request_hash,
                        target=target.name,
                        challenge_id=challenge.id,
                        probe_id=probe.id,
                        variant=variant,
                        variables=bindings,
                        sample=sample,
                        messages=messages,
                        params=tuple(sorted(params.items())),
                    )


ASSUMED_MAX_TOKENS = 1024


def estimate_tokens(item: WorkItem) -> tuple[int, int]:
    """A cautious estimate of an item's prompt tokens (one per 3 bytes, plus 4 per message) and its
    completion ceiling (max_tokens, or ASSUMED_MAX_TOKENS when the suite sets none)."""
    prompt = sum(len(m.content.encode()) for m in item.messages) // 3 + 4 * len(item.messages) + 3
    ceiling = dict(item.params).get("max_tokens") or ASSUMED_MAX_TOKENS
    return prompt, int(ceiling)


@dataclass(frozen=True)
class SamplePlan:
    """What a challenge's planned trials can decide at an assumed pass rate."""

    challenge_id: str
    trials: int
    half_width: float
    undecidable: tuple[str, ...]  # rules (policy/rule, minimum) the trials cannot decide


def sample_plan(suite: Suite, assumed_rate: float) -> list[SamplePlan]:
    """Per measured challenge: trials per target, the 95% interval half-width at `assumed_rate`, and the
    policy rules whose threshold that many trials could not decide (the interval would straddle it)."""
    out = []
    for challenge in suite.challenges:
        if not challenge.measured:
            continue
        trials = sum(len(variants(p)) * p.samples for p in challenge.probes)
        blocked = tuple(
            f"{policy.id}/{rule.id} (minimum {rule.min_pass_rate:.0%})"
            for policy in suite.policies
            for rule in policy.rules
            if rule.selects(challenge) and not decidable(trials, assumed_rate, rule.min_pass_rate)
        )
        out.append(SamplePlan(challenge.id, trials, half_width(trials, assumed_rate), blocked))
    return out
