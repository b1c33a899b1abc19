"""Expands a suite and its targets into work items (every probe variant x sample x target) and estimates what a
run of them asks of each model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from typing import Any

from auditor.criteria import Ask, Check, JudgeAnswer, build, needs_judge, uses_judge
from auditor.criteria.judge import ClassifierJudge
from auditor.records import Attack, Limits, Message, Probe, Reply, Suite, Target, WorkItem
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


def message_tokens(messages: tuple[Message, ...]) -> int:
    """A cautious estimate of a request's prompt tokens: one per 3 bytes, plus 4 per message and 3."""
    return sum(len(m.content.encode()) for m in messages) // 3 + 4 * len(messages) + 3


def estimate_tokens(item: WorkItem) -> tuple[int, int]:
    """A cautious estimate of an item's prompt tokens (message_tokens) and its completion ceiling (max_tokens,
    or ASSUMED_MAX_TOKENS when the suite sets none)."""
    ceiling = dict(item.params).get("max_tokens") or ASSUMED_MAX_TOKENS
    return message_tokens(item.messages), int(ceiling)


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


# --- what a run asks of each model, before anything is sent ------------------------------------------------------


@dataclass(frozen=True)
class Calls:
    """Requests to one model: how many, their estimated prompt tokens and their completion ceiling."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Calls) -> Calls:
        return Calls(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def cost(self, target: Target) -> float:
        """The cost ceiling at `target`'s declared prices (0 when none are declared)."""
        return target.price(self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Latency:
    """Seconds per request to one endpoint and model: the median over earlier runs in the archive, else assumed."""

    seconds: float
    runs: int = 0  # the earlier runs it was measured in; 0 when assumed


@dataclass(frozen=True)
class SearchCalls:
    """The most adaptive searches can send: attacker calls, extra target calls, and scorer calls."""

    attacker: Calls = Calls()
    target: Calls = Calls()
    scorer: Calls = Calls()

    def __add__(self, other: SearchCalls) -> SearchCalls:
        return SearchCalls(self.attacker + other.attacker, self.target + other.target, self.scorer + other.scorer)


@dataclass(frozen=True)
class Search:
    """One adaptive search at its maximum: what it attacks, its calls, and the ceilings of the trial it stores."""

    challenge_id: str
    probe: Probe
    calls: SearchCalls
    prompt_tokens: int  # the stored attack prompt (an attacker answer) at most
    reply_tokens: int  # the target's reply at most


@dataclass(frozen=True)
class Estimate:
    """What a suite asks of one target, and of the judge and attacker on its behalf, before anything is sent."""

    target: str
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    max_cost_usd: float
    priced: bool
    judged_trials: int = 0  # trials whose criterion uses a judge
    judge: Calls = Calls()  # grading calls, and the searches' scoring calls when the judge scores
    judge_cost_usd: float = 0.0
    searches: int = 0  # adaptive searches declared (run only with an attacker)
    attacker: Calls = Calls()  # prompt-writing calls, and the scoring calls when the attacker scores
    attacker_cost_usd: float = 0.0
    attack_target: Calls = Calls()  # the extra calls the searches send to the target
    attack_target_cost_usd: float = 0.0
    latency: Latency = Latency(0.0)
    duration_s: float = 0.0  # the planned requests at the target's limits
    search_duration_s: float = 0.0  # the adaptive searches, after them


@dataclass(frozen=True)
class HelperEstimate:
    """The judge's or the attacker's calls over all targets, their cost ceiling, and the time of its phase."""

    name: str
    calls: Calls
    cost_usd: float
    priced: bool
    latency: Latency
    duration_s: float  # the judge: grading after the run; the attacker: the adaptive searches


@dataclass(frozen=True)
class PlanEstimate:
    """A run's requests, calls, cost ceilings and wall-clock time, per target and for the judge and attacker."""

    targets: tuple[Estimate, ...]
    judge: HelperEstimate | None
    attacker: HelperEstimate | None
    scorer: str | None  # who scores adaptive attempts (a chat judge, else the attacker); None without attacker
    judged_trials: int
    judge_required: bool  # a judge criterion without fallback: `auditor run` refuses without --judge
    searches: int
    duration_s: float  # targets side by side, then the searches one target after another, then grading


def priced(target: Target) -> bool:
    return any(k in ("price_input_per_mtok", "price_output_per_mtok") for k, _ in target.facts)


def stand_in(tokens: int) -> str:
    """A text message_tokens counts as `tokens` tokens: a reply or an attack prompt at its ceiling."""
    return "x" * (3 * tokens)


def judge_calls(check: Check, prompt: str, ceiling: int, judge: Target) -> Calls:
    """The judge requests grading one reply of up to `ceiling` tokens to `prompt` sends: the probe's criterion runs
    on a stand-in reply with an Ask that records each request instead of sending it, as grading's first pass does
    (every judge inside a combinator is asked). Grading sends identical requests once, so repeated replies and
    answers already in the archive make it fewer."""
    asked: list[Calls] = []

    def record(messages: tuple[Message, ...], max_tokens: int) -> JudgeAnswer:
        asked.append(Calls(1, message_tokens(messages), max_tokens))
        return JudgeAnswer(None)

    ask: Ask = ClassifierJudge.of(judge.name, dict(judge.classifier), record) if judge.classifier else record
    reply = stand_in(ceiling)
    check(Reply(reply, prompt.replace("{{last_reply}}", reply)), ask)
    return sum(asked, Calls())


def duration_s(calls: Calls, paced: int, latency: float, limits: Limits) -> float:
    """Seconds to send `calls` at `latency` each under `limits`: the slowest of the concurrency bound, the
    requests-per-minute bound over the `paced` requests the throttle counts, and the tokens-per-minute bound."""
    bounds = [calls.calls * latency / max(1, limits.concurrency)]
    if limits.requests_per_minute:
        bounds.append(60.0 * paced / limits.requests_per_minute)
    if limits.tokens_per_minute:
        bounds.append(60.0 * (calls.prompt_tokens + calls.completion_tokens) / limits.tokens_per_minute)
    return max(bounds)


def _asked(item: WorkItem) -> str:
    """The prompt grading shows a judge for an item: the last user message of the conversation sent."""
    return item.turns[-1] if item.turns else next((m.content for m in reversed(item.messages) if m.role == "user"), "")


def estimate_run(
    suite: Suite,
    targets: list[Target],
    helpers: tuple[Target | None, Target | None],
    searches: dict[str, list[Search]],
    latency: dict[str, Latency],
) -> PlanEstimate:
    """What a run would send, cost at most and take. `helpers` are the judge and the attacker (or None); `searches`
    each target's adaptive searches (sent only with an attacker); `latency` is per model name."""
    judge, attacker = helpers
    scorer = judge if judge is not None and not judge.classifier else attacker
    checks = {
        (c.id, p.id): build(p.pass_if.spec)
        for c, p in suite.probes()
        if uses_judge(p.pass_if.spec) and p.pass_if.kind != "consistency"  # consistency groups call no judge
    }
    rows, grading = [], Calls()
    for t in targets:
        items, lat = list(plan(suite, [t])), latency[t.name]
        sent = sum((Calls(max(1, len(i.turns)), *estimate_tokens(i)) for i in items), Calls())
        found = searches.get(t.name, []) if attacker else []
        trials = [(i.challenge_id, i.probe_id, _asked(i), estimate_tokens(i)[1]) for i in items]
        trials += [(s.challenge_id, s.probe.id, stand_in(s.prompt_tokens), s.reply_tokens) for s in found]
        judged = [(checks[c, p], prompt, ceiling) for c, p, prompt, ceiling in trials if (c, p) in checks]
        mine = sum((judge_calls(*j, judge) for j in judged), Calls()) if judge else Calls()
        grading += mine
        calls = sum((s.calls for s in found), SearchCalls())
        scoring = calls.scorer.calls * (latency[scorer.name].seconds if scorer else 0.0)
        chain = calls.target.calls * lat.seconds + scoring  # one search's calls follow each other
        searching = (chain + calls.attacker.calls * (latency[attacker.name].seconds if attacker else 0.0)) / max(
            1, t.limits.concurrency
        )
        judge_load = mine + (calls.scorer if scorer is not None and scorer is judge else Calls())
        attacker_load = calls.attacker + (calls.scorer if scorer is not None and scorer is attacker else Calls())
        rows.append(
            Estimate(
                t.name, len(items), sent.prompt_tokens, sent.completion_tokens, sent.cost(t), priced(t), len(judged),
                judge_load, judge_load.cost(judge) if judge else 0.0, len(searches.get(t.name, [])),
                attacker_load, attacker_load.cost(attacker) if attacker else 0.0, calls.target, calls.target.cost(t),
                lat, duration_s(sent, len(items), lat.seconds, t.limits), searching,
            )
        )  # fmt: skip

    def helper(h: Target | None, calls: Calls, seconds: float) -> HelperEstimate | None:
        return None if h is None else HelperEstimate(h.name, calls, calls.cost(h), priced(h), latency[h.name], seconds)

    grading_s = duration_s(grading, grading.calls, latency[judge.name].seconds, judge.limits) if judge else 0.0
    searching_s = sum(r.search_duration_s for r in rows)
    return PlanEstimate(
        tuple(rows),
        helper(judge, sum((r.judge for r in rows), Calls()), grading_s),
        helper(attacker, sum((r.attacker for r in rows), Calls()), searching_s),
        scorer.name if scorer and attacker else None,
        sum(r.judged_trials for r in rows),
        any(needs_judge(p.pass_if.spec) for _, p in suite.probes()),
        sum(r.searches for r in rows),
        max((r.duration_s for r in rows), default=0.0) + searching_s + grading_s,
    )
