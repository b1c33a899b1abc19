"""Frozen, typed records the pipeline stages hand to each other."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Criterion:
    """A pass criterion as declared in a suite; `spec` is the checked JSON object."""

    kind: str
    means: str
    spec: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str


@dataclass(frozen=True)
class ProbeExample:
    """A labelled reply shipped with a probe: what a person says a realistic reply should be graded."""

    replies: tuple[str, ...]  # one reply, or one per sample for consistency criteria
    expect: tuple[str, ...]  # pass | fail, one per reply
    why: str = ""
    variables: tuple[tuple[str, str | int], ...] = ()
    latency_s: float | None = None
    completion_tokens: int | None = None
    judge_only: bool = False  # only a judge decides it: the deterministic criterion or fallback is known to miss it


@dataclass(frozen=True)
class Probe:
    """A measured probe: a conversation template, its variables, sampling and pass criterion."""

    id: str
    description: str
    messages: tuple[Message, ...]
    system: str | None
    variables: tuple[tuple[str, tuple[str, ...]], ...]
    samples: int
    params: tuple[tuple[str, Any], ...]
    pass_if: Criterion
    intent: str | None = None
    twin: str | None = None
    attacks: tuple[str, ...] = ()
    category: str | None = None
    translations: tuple[tuple[str, str], ...] = ()
    turns: tuple[str, ...] = ()
    examples: tuple[ProbeExample, ...] = ()
    stereotype: str | None = None  # a regex matching the stereotyped wrong answer (bias probes)
    fresh: bool = False  # never served from the archive's cache of earlier replies


@dataclass(frozen=True)
class Attack:
    """An attack declared in a suite; `spec` is its checked JSON object."""

    id: str
    type: str
    family: str
    spec: dict[str, Any] = field(hash=False, compare=False)

    @property
    def adaptive(self) -> bool:
        return self.type in ("pair", "tap")


@dataclass(frozen=True)
class Evidence:
    """What a documentary challenge attests, and the declared facts shown beside it."""

    statement: str
    facts: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Challenge:
    """A risk the suite examines, measured by probes or attested by evidence."""

    id: str
    title: str
    category: str
    severity: str
    description: str
    controls: tuple[str, ...]
    probes: tuple[Probe, ...]
    evidence: Evidence | None

    @property
    def measured(self) -> bool:
        return bool(self.probes)


@dataclass(frozen=True)
class Rule:
    """An acceptance rule: the challenges it selects must reach a minimum pass rate."""

    id: str
    description: str
    ids: tuple[str, ...]
    categories: tuple[str, ...]
    severities: tuple[str, ...]
    min_pass_rate: float
    on_fail: str
    conditions: tuple[str, ...]
    per: str = "challenge"  # or attack, family, category, probe: what must each reach the minimum

    def selects(self, challenge: Challenge) -> bool:
        """True when the challenge matches every selector the rule gives."""
        return (
            (not self.ids or challenge.id in self.ids)
            and (not self.categories or challenge.category in self.categories)
            and (not self.severities or challenge.severity in self.severities)
        )


@dataclass(frozen=True)
class Policy:
    """A deployment context and its acceptance rules."""

    id: str
    title: str
    description: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Scope:
    """What the suite is for and what it leaves out."""

    intended_use: str
    out_of_scope: str
    limitations: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite and where it came from."""

    id: str
    version: str
    title: str
    description: str
    owner: str
    scope: Scope
    challenges: tuple[Challenge, ...]
    policies: tuple[Policy, ...]
    path: str
    sha256: str
    attacks: tuple[Attack, ...] = ()

    def challenge(self, challenge_id: str) -> Challenge:
        """The challenge with this id (KeyError if there is none)."""
        for c in self.challenges:
            if c.id == challenge_id:
                return c
        raise KeyError(challenge_id)

    def probes(self) -> list[tuple[Challenge, Probe]]:
        return [(c, p) for c in self.challenges for p in c.probes]


@dataclass(frozen=True)
class Limits:
    """How hard auditor may push one endpoint."""

    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 4
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


@dataclass(frozen=True)
class LimitOverrides:
    """Limits given on the command line for every target (None: keep each target's own)."""

    concurrency: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float | None = None
    max_retries: int | None = None


@dataclass(frozen=True)
class Target:
    """A model under audit (or a helper model) behind an OpenAI-compatible endpoint."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None
    params: tuple[tuple[str, Any], ...]
    system_prompt: str | None
    limits: Limits
    facts: tuple[tuple[str, Any], ...]
    # a classifier judge (type completion or llama_guard, and its settings); empty for a chat model
    classifier: tuple[tuple[str, Any], ...] = ()
    # how the request is sent: extra headers (stored), secret headers (name -> environment variable), the
    # api-version query parameter Azure deployment URLs need, and how the key goes (bearer or api-key header)
    headers: tuple[tuple[str, str], ...] = ()
    headers_env: tuple[tuple[str, str], ...] = ()
    api_version: str | None = None
    auth: str = "bearer"

    def with_limits(self, overrides: LimitOverrides) -> Target:
        """The target with the limits `overrides` sets replaced."""
        given = {k: v for k, v in asdict(overrides).items() if v is not None}
        return replace(self, limits=replace(self.limits, **given)) if given else self

    def price(self, prompt_tokens: float, completion_tokens: float) -> float:
        """Cost in USD at the declared prices (0 when none are declared)."""
        facts = dict(self.facts)
        return (
            prompt_tokens * float(facts.get("price_input_per_mtok", 0))
            + completion_tokens * float(facts.get("price_output_per_mtok", 0))
        ) / 1e6

    @property
    def embedded(self) -> bool:
        return self.base_url.startswith("embedded:")

    def public(self) -> dict[str, Any]:
        """The target as recorded in a manifest: everything but secrets (which it never holds)."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "params": dict(self.params),
            "system_prompt": self.system_prompt,
            "limits": {k: v for k, v in asdict(self.limits).items() if v is not None},
            "facts": dict(self.facts),
            **({"classifier": dict(self.classifier)} if self.classifier else {}),
            **({"headers": dict(self.headers)} if self.headers else {}),
            **({"headers_env": dict(self.headers_env)} if self.headers_env else {}),
            **({"api_version": self.api_version} if self.api_version else {}),
            **({"auth": self.auth} if self.auth != "bearer" else {}),
        }


@dataclass(frozen=True)
class WorkItem:
    """One planned request: a probe variant and sample sent to one target."""

    item_id: str
    request_hash: str
    target: str
    challenge_id: str
    probe_id: str
    variant: int
    variables: tuple[tuple[str, str], ...]
    sample: int
    messages: tuple[Message, ...]
    params: tuple[tuple[str, Any], ...]
    attack: str = "direct"
    category: str | None = None
    turns: tuple[str, ...] = ()  # a scripted conversation: user turns sent one at a time after `messages`
    fresh: bool = False  # never served from the cache
    endpoint: str = "chat"  # chat (POST /chat/completions) or completions (POST /completions, prompt = messages[-1])


@dataclass(frozen=True)
class Completion:
    """What an endpoint answered to one work item, or the error class if it failed."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    returned_model: str | None
    system_fingerprint: str | None
    error_class: str | None
    error_message: str | None
    attempts: int
    started_at: str
    transcript: tuple[Message, ...] | None = None  # the whole conversation, for multi-turn probes


@dataclass(frozen=True)
class Reply:
    """What a criterion sees of one stored response."""

    content: str
    prompt: str
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class Grade:
    """The outcome of one criterion on one response, the evidence, and the judge rubric if one decided."""

    outcome: str  # pass | fail | error | unparseable
    evidence: str
    via: str = ""
