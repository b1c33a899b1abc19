"""Sends work items to OpenAI-compatible endpoints: bounded concurrency, timeouts, retries.

One event loop; per target a fixed pool of workers (its concurrency limit) pulls items from a
shared iterator, so memory stays flat however large the plan. Every outcome, success or final
error, is handed to `on_result` as it arrives, so the caller stores it before anything else.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from auditor.clock import now
from auditor.errors import EndpointError
from auditor.records import Completion, Message, WorkItem
from auditor.run.endpoint import Endpoint, make_client, not_connected, root_warning
from auditor.run.plan import estimate_tokens
from auditor.run.throttle import Bucket, Budget, Gate
from auditor.run.wire import Answer, Malformed, read_body, read_completion_body, scrub


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, reduced to what the retry decision needs."""

    kind: str  # status | timeout | connection | malformed | empty
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Decision:
    """Whether to retry a failed attempt, after how long, and the error class if not."""

    retry: bool
    wait_s: float
    error_class: str


_STATUS_CLASS = {400: "bad_request", 401: "auth_error", 403: "auth_error", 404: "not_found", 422: "bad_request"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def _duration(text: str) -> float | None:
    """Parse x-ratelimit-reset style durations such as '1s', '6m0s', '20ms'."""
    parts = _DURATION.findall(text)
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def server_wait(headers: Mapping[str, str]) -> float | None:
    """The wait the server asked for: retry-after-ms, Retry-After (seconds or date), x-ratelimit-reset-*."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return max(0.0, float(h["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in h:
        value = h["retry-after"].strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    resets = [_duration(h[k]) for k in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens") if k in h]
    waits = [w for w in resets if w is not None]
    return max(waits) if waits else None


def classify(failure: Failure, attempt: int, max_retries: int, jitter: float) -> Decision:
    """Decide retry and wait for a failed attempt (attempt counts from 1; jitter in [0, 1)).

    Retried: timeouts, dropped connections, malformed or empty answers, 408, 409, 429 and 5xx.
    Not retried: other 4xx (bad request, auth, unknown model), which would fail the same way again.
    The wait honours what the server asked for, else backs off exponentially with jitter, at most 60 s.
    """
    if failure.kind == "status":
        status = failure.status or 0
        if status == 429:
            error_class = "rate_limited"
        elif status >= 500:
            error_class = "server_error"
        elif status in (408, 409):
            error_class = "timeout" if status == 408 else "conflict"
        else:
            return Decision(False, 0.0, _STATUS_CLASS.get(status, "client_error"))
    else:
        error_class = {
            "timeout": "timeout",
            "connection": "connection_error",
            "malformed": "malformed_response",
            "empty": "empty_response",
        }.get(failure.kind, "unknown_error")
    if attempt > max_retries:
        return Decision(False, 0.0, error_class)
    asked = server_wait(failure.headers)
    backoff = min(60.0, 0.25 * 2 ** min(attempt - 1, 16) * (0.5 + jitter))
    return Decision(True, min(60.0, asked) if asked is not None else backoff, error_class)


def _failure(exc: BaseException) -> Failure:
    import openai

    refused = not_connected(exc)
    if isinstance(exc, openai.APITimeoutError) and refused is None:
        return Failure("timeout", message="request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = refused or exc.__cause__ or exc
        return Failure("connection", message=f"{type(cause).__name__}: {cause}"[:300])
    if isinstance(exc, openai.APIStatusError):
        return Failure("status", exc.status_code, dict(exc.response.headers), str(exc.message)[:300])
    return Failure("malformed", message=f"{type(exc).__name__}: {exc}"[:300])


@dataclass
class Tally:
    """Live counters for progress display, per target."""

    total: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    concurrency: int = 0
    started: float = field(default_factory=time.monotonic)


OnResult = Callable[[WorkItem, Completion], None]
OnWarning = Callable[[str], None]
Sleep = Callable[[float], Awaitable[None]]
_FATAL = {"connection_error", "auth_error", "not_found"}
POOL = 32  # requests in flight per API client


def sending_order(item: WorkItem) -> tuple[str, ...]:
    """Requests are sent in the order of their messages, so those sharing a beginning (a system prompt, a long
    document asked about several times) go one after another: the embedded model then reads the shared part once,
    and providers' prompt caches see it while it is warm. Which replies a run stores does not depend on the order."""
    return tuple(f"{m.role}\x00{m.content}" for m in item.messages)


class Executor:
    """Runs work items against endpoints, calling on_result for every final outcome."""

    def __init__(
        self,
        endpoints: dict[str, Endpoint],
        on_result: OnResult,
        seed: int = 0,
        budget: Budget | None = None,
        on_warning: OnWarning | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.endpoints = endpoints
        self.sleep = sleep  # how the back-off between retries waits (tests pass one that only records)
        self.on_result = on_result
        self.on_warning = on_warning or (lambda message: None)
        self.rng = random.Random(seed)
        self.budget = budget
        self.tallies = {name: Tally() for name in endpoints}
        self.successes = {name: 0 for name in endpoints}
        self.identity: dict[str, tuple[str | None, str | None]] = {}
        # how far real prompt token counts have exceeded the estimate; reservations scale by it
        self.prompt_ratio = {name: 1.0 for name in endpoints}
        self.identity_changes: list[dict[str, Any]] = []
        self.gates = {name: Gate(ep.target.limits.concurrency) for name, ep in endpoints.items()}
        self.clients: dict[tuple[str, int], Any] = {}
        self.buckets = {
            name: (
                Bucket(ep.target.limits.requests_per_minute) if ep.target.limits.requests_per_minute else None,
                Bucket(ep.target.limits.tokens_per_minute) if ep.target.limits.tokens_per_minute else None,
            )
            for name, ep in endpoints.items()
        }

    @property
    def capped(self) -> bool:
        return bool(self.budget and self.budget.exhausted)

    async def run(self, items: Iterable[WorkItem]) -> None:
        """Send every item; raise EndpointError if a target cannot be used at all."""
        by_target: dict[str, list[WorkItem]] = {name: [] for name in self.endpoints}
        for item in items:
            by_target[item.target].append(item)
        for todo in by_target.values():
            todo.sort(key=sending_order)
        await asyncio.gather(*(self._check_root(name) for name, todo in by_target.items() if todo))
        workers = []
        for name, ep in self.endpoints.items():
            queue = iter(by_target[name])
            self.tallies[name].total += len(by_target[name])
            workers += [self._worker(k // POOL, ep, queue) for k in range(ep.target.limits.concurrency)]
        try:
            await _gather_or_cancel(workers)
        finally:
            await self.close()

    async def _check_root(self, name: str) -> None:
        warning = await root_warning(self.client(name), self.endpoints[name])
        if warning:
            self.on_warning(warning)

    def client(self, name: str, lane: int = 0) -> Any:
        """An API client for an endpoint, made on first use: one per POOL requests in flight (`lane`), as a
        client's connection pool looks at each of its connections for every request it sends."""
        if (name, lane) not in self.clients:
            self.clients[(name, lane)] = make_client(self.endpoints[name])
        return self.clients[(name, lane)]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        self.clients.clear()

    async def ask(self, name: str, messages: tuple[Message, ...], params: dict[str, Any]) -> Completion:
        """One request to endpoint `name` outside a planned item (adaptive attacks), paced and retried alike."""
        ep = self.endpoints[name]
        gate = self.gates[name]
        await gate.acquire()
        try:
            completion = await self._call(self.client(name), ep, messages, params)
        finally:
            await gate.release()
        self._count(ep, completion, ep.target.price(completion.prompt_tokens or 0, completion.completion_tokens or 0))
        return completion

    async def _worker(self, lane: int, ep: Endpoint, queue: Iterator[WorkItem]) -> None:
        name = ep.target.name
        client = self.client(name, lane)  # made as the lane's first worker starts, not all before the first request
        gate = self.gates[name]
        requests, tokens = self.buckets[name]
        for item in queue:
            prompt_est, ceiling = estimate_tokens(item)
            worst = ep.target.price(prompt_est * self.prompt_ratio[name], ceiling)
            if self.budget is not None and not self.budget.reserve(worst):
                return  # the cap would be crossed: stop taking work; the rest stays for a resume
            await gate.acquire()
            try:
                if requests:
                    await requests.take(1)
                if tokens:
                    await tokens.take(prompt_est + ceiling)
                completion = await self._send_safely(client, ep, item)
            finally:
                await gate.release()
            cost = ep.target.price(completion.prompt_tokens or 0, completion.completion_tokens or 0)
            if completion.prompt_tokens:
                self.prompt_ratio[name] = max(self.prompt_ratio[name], completion.prompt_tokens / max(1, prompt_est))
            if self.budget is not None:
                self.budget.settle(worst, cost)
            self._count(ep, completion, cost)
            self.on_result(item, completion)
            if completion.error_class in _FATAL and not self.successes[name]:
                raise EndpointError(
                    f"target '{name}' at {ep.url}: {completion.error_class.replace('_', ' ')}: "
                    f"{completion.error_message} (completed results are kept; fix the endpoint and resume)"
                )

    def _count(self, ep: Endpoint, completion: Completion, cost: float) -> None:
        name = ep.target.name
        tally = self.tallies[name]
        tally.done += 1
        tally.concurrency = self.gates[name].limit
        if completion.error_class:
            tally.errors += 1
            return
        self.successes[name] += 1
        tally.prompt_tokens += completion.prompt_tokens or 0
        tally.completion_tokens += completion.completion_tokens or 0
        tally.cost += cost
        self.observe(name, (completion.returned_model, completion.system_fingerprint), completion.started_at)

    def observe(self, name: str, seen: tuple[str | None, str | None], at: str) -> None:
        """Note the model and fingerprint a reply of target `name` reported; record and warn about each one that
        differs from the first."""
        first = self.identity.setdefault(name, seen)
        if seen != first and seen not in {
            (c["model"], c["fingerprint"]) for c in self.identity_changes if c["target"] == name
        }:
            change = {
                "target": name,
                "model": seen[0],
                "fingerprint": seen[1],
                "was_model": first[0],
                "was_fingerprint": first[1],
                "at": at,
            }
            self.identity_changes.append(change)
            self.on_warning(
                f"target '{name}': the endpoint now reports model {seen[0]!r} / fingerprint {seen[1]!r} "
                f"(first {first[0]!r} / {first[1]!r}); a backend change can invalidate comparisons"
            )

    async def _send_safely(self, client: Any, ep: Endpoint, item: WorkItem) -> Completion:
        """`_send`, with anything unforeseen stored as an error row of this item instead of ending the run."""
        started_at = now()
        try:
            return await self._send(client, ep, item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the run goes on; the row says what happened
            message = scrub(f"{type(exc).__name__}: {exc}", ep.secrets)
            return _error_completion("internal_error", message, 0.0, 1, started_at)

    async def _send(self, client: Any, ep: Endpoint, item: WorkItem) -> Completion:
        """One item: a single request, or a scripted conversation sent turn by turn."""
        if not item.turns:
            return await self._call(client, ep, item.messages, dict(item.params), item.endpoint)
        conversation = list(item.messages)
        last = ""
        prompt_tokens = completion_tokens = attempts = 0
        latency = 0.0
        started_at = now()
        for turn in item.turns:
            conversation.append(Message("user", turn.replace("{{last_reply}}", last)))
            c = await self._call(client, ep, tuple(conversation), dict(item.params))
            attempts += c.attempts
            latency += c.latency_s
            prompt_tokens += c.prompt_tokens or 0
            completion_tokens += c.completion_tokens or 0
            if c.error_class:
                return replace(c, attempts=attempts, started_at=started_at, transcript=tuple(conversation))
            last = c.content or ""
            conversation.append(Message("assistant", last))
        return replace(
            c,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=round(latency, 6),
            attempts=attempts,
            started_at=started_at,
            transcript=tuple(conversation),
        )

    async def _call(
        self,
        client: Any,
        ep: Endpoint,
        messages: tuple[Message, ...],
        kwargs: dict[str, Any],
        endpoint: str = "chat",
    ) -> Completion:
        """One request, retried as `classify` decides: a chat completion, or on endpoint `completions` a text
        completion whose prompt is the last message's content."""
        started_at = now()
        attempt = 0
        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                answer: Answer | Malformed | Failure
                # the client's own post: the body goes out as built here, without the SDK's per-field typing pass
                if endpoint == "completions":
                    body = {"model": ep.target.model, "prompt": messages[-1].content, **kwargs}
                    raw = await client.post("/completions", cast_to=bytes, body=body, options={"headers": ep.headers})
                    answer = read_completion_body(raw)
                else:
                    sent = [{"role": m.role, "content": m.content} for m in messages]
                    body = {"model": ep.target.model, "messages": sent, **kwargs}
                    raw = await client.post(
                        "/chat/completions", cast_to=bytes, body=body, options={"headers": ep.headers}
                    )
                    answer = read_body(raw)
            except Exception as exc:  # every provider error is classified, none escapes
                answer = _failure(exc)
            latency = round(time.monotonic() - t0, 6)
            if isinstance(answer, Answer):
                self.gates[ep.target.name].went_well()
                return _completion(answer, ep.secrets, latency, attempt, started_at)
            failure = answer if isinstance(answer, Failure) else Failure(answer.kind, message=answer.message)
            if failure.status in (429, 503):
                self.gates[ep.target.name].pushed_back()
            decision = classify(failure, attempt, ep.target.limits.max_retries, self.rng.random())
            if not decision.retry:
                message = scrub(failure.message or f"HTTP {failure.status}", ep.secrets)
                return _error_completion(decision.error_class, message, latency, attempt, started_at)
            self.tallies[ep.target.name].retries += 1
            await self.sleep(decision.wait_s)


def _completion(answer: Answer, secrets: tuple[str, ...], latency: float, attempts: int, started_at: str) -> Completion:
    """A successful completion, with any secret the endpoint echoed redacted."""
    return Completion(
        content=scrub(answer.content, secrets),
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        latency_s=latency,
        returned_model=scrub(answer.model, secrets) if answer.model is not None else None,
        system_fingerprint=answer.fingerprint,
        error_class=None,
        error_message=None,
        attempts=attempts,
        started_at=started_at,
    )


def _error_completion(error_class: str, message: str, latency: float, attempts: int, started_at: str) -> Completion:
    """A request that failed for good: stored as an error row, never graded as a pass or a fail."""
    return Completion(
        content=None,
        finish_reason=None,
        prompt_tokens=None,
        completion_tokens=None,
        latency_s=latency,
        returned_model=None,
        system_fingerprint=None,
        error_class=error_class,
        error_message=message[:1000],
        attempts=attempts,
        started_at=started_at,
    )


async def _gather_or_cancel(coros: list[Any]) -> None:
    """Run coroutines together; on the first exception cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
