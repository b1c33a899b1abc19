"""How a target is reached: its URL, key and headers, the API client that sends to it, and a check that its
base_url is an API root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from auditor.errors import ConfigError
from auditor.records import Target

NO_KEY = "not-needed"
LOOPBACK = ("all://127.0.0.1", "all://localhost", "all://[::1]")  # never reached through a proxy


@dataclass(frozen=True)
class Endpoint:
    """A target with the URL, key and secret headers to reach it (none of them ever stored)."""

    target: Target
    url: str
    api_key: str
    secret_headers: tuple[tuple[str, str], ...] = ()  # header name and value, read from headers_env

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be stored or printed: the API key and secret header values."""
        return ((self.api_key,) if self.api_key != NO_KEY else ()) + tuple(v for _, v in self.secret_headers)

    @property
    def headers(self) -> dict[str, Any]:
        """Headers sent with every request: the target's own, its secret ones, and the key as an api-key header
        (with no Authorization header) when the target says so."""
        import openai

        sent: dict[str, Any] = dict(self.target.headers) | dict(self.secret_headers)
        if self.target.auth == "api-key":
            sent |= {"api-key": self.api_key, "Authorization": openai.Omit()}
        return sent


def _secret(t: Target, variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"target '{t.name}' needs {what} in the environment variable {variable}, which is not set")
    return value


def check_keys(targets: list[Target]) -> dict[str, tuple[str, dict[str, str]]]:
    """Each target's API key and secret headers, read from the environment; one clear error if one is missing."""
    keys = {}
    for t in targets:
        key = _secret(t, t.api_key_env, "an API key") if t.api_key_env else NO_KEY
        headers = {name: _secret(t, variable, f"header {name}") for name, variable in t.headers_env}
        keys[t.name] = (key, headers)
    return keys


def make_client(ep: Endpoint) -> Any:
    """The API client for an endpoint: no retries of its own (the executor decides), the target's timeout and
    api-version; proxies and CA bundles from the environment (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE), except that
    a server on this machine is never reached through a proxy. As many connections are kept alive as requests may
    be in flight, so none is opened and closed again per request at a high concurrency."""
    import openai

    default = openai.DEFAULT_CONNECTION_LIMITS
    slots = ep.target.limits.concurrency
    limits = type(default)(
        max_connections=max(default.max_connections or 0, slots),
        max_keepalive_connections=max(default.max_keepalive_connections or 0, slots),
        keepalive_expiry=default.keepalive_expiry,
    )
    return openai.AsyncOpenAI(
        base_url=ep.url,
        api_key=ep.api_key,
        max_retries=0,
        timeout=ep.target.limits.timeout_s,
        default_query={"api-version": ep.target.api_version} if ep.target.api_version else None,
        http_client=openai.DefaultAioHttpClient(mounts=dict.fromkeys(LOOPBACK), limits=limits),
    )


def not_connected(exc: BaseException) -> BaseException | None:
    """The HTTP transport's own error when no connection could be made for a reason other than time (refused,
    unknown host, certificate): the aiohttp transport `make_client` chooses reports those as connect timeouts."""
    import aiohttp

    seen: BaseException | None = exc
    for _ in range(16):  # a chain of causes, however it was built, is followed only so far
        if seen is None or isinstance(seen, aiohttp.ClientConnectorError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def root_warning(client: Any, ep: Endpoint) -> str | None:
    """A warning when base_url does not look like an API root: GET /models answers 404 (a vLLM or Ollama URL
    without /v1, say). Anything else is left to the requests themselves to report."""
    import openai

    if ep.target.api_version:  # an Azure deployment URL serves no model list
        return None
    try:
        await client.models.list(extra_headers=ep.headers, timeout=min(10.0, ep.target.limits.timeout_s))
    except openai.NotFoundError:
        return (
            f"target '{ep.target.name}': {ep.url}/models answers 404 Not Found; is base_url the API root? "
            "OpenAI-compatible servers (vLLM, Ollama, llama.cpp) serve it under /v1, e.g. http://host:8000/v1"
        )
    except Exception:  # noqa: BLE001 - unreachable, unauthorised ...: the requests will say so, one by one
        return None
    return None
