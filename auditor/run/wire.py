"""Reads an endpoint's raw chat-completion (or text-completion) body into checked fields: whatever the endpoint
sends, the result is either clean typed values or a Failure, never an exception and never text the archive cannot
store.

An endpoint is not trusted: its body may not be JSON, may nest without end, may put a number where text goes,
hold lone surrogates (not valid Unicode, so not storable as UTF-8), report usage as strings, or echo the API key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_CONTENT = 1_000_000  # characters of one reply kept; the rest is cut with a visible marker
MAX_TOKENS = 2**53  # larger token counts are not counts
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Answer:
    """The checked fields of a successful chat (or text) completion."""

    content: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None
    fingerprint: str | None


@dataclass(frozen=True)
class Malformed:
    """Why a body is not a usable chat completion; `kind` is malformed or empty (both retried)."""

    kind: str
    message: str


def clean(text: str) -> str:
    """The text with lone surrogates written as visible escapes (\\ud800), so it can be stored as UTF-8."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Clean text and replace every secret in it (API keys, URL credentials) with [REDACTED]."""
    text = clean(text)
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


def _text(value: Any) -> str | None:
    return clean(value) if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_TOKENS:
        return None
    return value


def _content(message: dict[str, Any]) -> str | Malformed:
    content = message.get("content")
    if content is None:
        refusal = message.get("refusal")  # structured-output refusals arrive here, with content null
        return refusal if isinstance(refusal, str) else ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if texts or not content:
            return "".join(texts)
        return Malformed("malformed", "the reply's content is a list with no text parts")
    return Malformed("malformed", f"the reply's content is {type(content).__name__} JSON, not text")


def _first_choice(data: bytes | str) -> tuple[dict[str, Any], Any] | Malformed:
    """The body as a JSON object and its first choice (not yet checked), or why there is none."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return Malformed("malformed", "the reply is not JSON")
    if not isinstance(body, dict):
        return Malformed("malformed", f"the reply is a JSON {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return Malformed("malformed", "the reply holds an error: " + clean(error["message"])[:300])
        return Malformed("empty", "the reply had no choices")
    return body, choices[0]


def _answer(body: dict[str, Any], choice: dict[str, Any], content: str) -> Answer:
    """The checked fields of a body whose reply text is `content`: text cleaned and cut, counts typed."""
    content = clean(content)
    if len(content) > MAX_CONTENT:
        content = f"{content[:MAX_CONTENT]}\n[auditor: reply cut at {MAX_CONTENT:,} of {len(content):,} characters]"
    usage: dict[str, Any] = body["usage"] if isinstance(body.get("usage"), dict) else {}
    return Answer(
        content=content,
        finish_reason=_text(choice.get("finish_reason")),
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        model=_text(body.get("model")),
        fingerprint=_text(body.get("system_fingerprint")),
    )


def read_body(data: bytes | str) -> Answer | Malformed:
    """Check a chat.completion body; every field is typed, text is storable, content is at most MAX_CONTENT."""
    found = _first_choice(data)
    if isinstance(found, Malformed):
        return found
    body, choice = found
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return Malformed("malformed", "the reply's first choice has no message object")
    content = _content(message)
    if isinstance(content, Malformed):
        return content
    return _answer(body, choice, content)


def read_completion_body(data: bytes | str) -> Answer | Malformed:
    """Check a text_completion body (POST /completions): the text is `choices[0].text`; every other field is read
    and typed as read_body reads a chat completion's."""
    found = _first_choice(data)
    if isinstance(found, Malformed):
        return found
    body, choice = found
    if not isinstance(choice, dict):
        return Malformed("malformed", f"the reply's first choice is {type(choice).__name__} JSON, not an object")
    text = choice.get("text")
    if not isinstance(text, str):
        if text is None:
            return Malformed("malformed", "the reply's first choice has no text")
        return Malformed("malformed", f"the reply's text is {type(text).__name__} JSON, not text")
    return _answer(body, choice, text)
