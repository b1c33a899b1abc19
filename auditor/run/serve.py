"""A small OpenAI-compatible chat server on 127.0.0.1, answering from a pluggable responder.

It serves the embedded local model, and gives tests and benchmarks a real HTTP endpoint whose
answers, errors and latency they script. Given a second responder it also serves the completions
endpoint (POST /v1/completions), as classifier judges use it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Scripted:
    """A scripted answer: a JSON body or raw bytes, a status, headers, a delay, or a dropped connection."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None
    drop: bool = False


Responder = Callable[[dict[str, Any]], Scripted]


def chat_body(
    content: str,
    model: str = "test-model",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    finish_reason: str = "stop",
    system_fingerprint: str | None = None,
) -> dict[str, Any]:
    """A chat.completion body in the OpenAI format."""
    body: dict[str, Any] = {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if system_fingerprint is not None:
        body["system_fingerprint"] = system_fingerprint
    return body


def completion_body(
    text: str,
    model: str = "test-model",
    prompt_tokens: int = 10,
    completion_tokens: int = 1,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A text_completion body in the OpenAI format (the completions endpoint's answer)."""
    return {
        "id": "cmpl-local",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    """An error body in the OpenAI format."""
    return {"error": {"message": message, "type": "error", "code": status}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every reply on a kept-alive connection
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        pass

    def _send(self, reply: Scripted) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.drop:
            self.close_connection = True
            self.connection.close()
            return
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _note(self) -> None:
        if self.server.record:
            with self.server.lock:
                self.server.calls.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._note()
        if self.path.rstrip("/").endswith("/stats"):
            with self.server.lock:
                self._send(Scripted({"requests": self.server.count}))
        elif self.path.rstrip("/").endswith("/models") and self.server.models:
            self._send(Scripted({"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]}))
        else:
            self._send(Scripted(error_body(404, "not found"), status=404))

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._note()
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(Scripted(error_body(400, "request body is not JSON"), status=400))
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/chat/completions"):
            responder = self.server.responder
        elif path.endswith("/completions") and self.server.completions is not None:
            responder = self.server.completions
        else:
            self._send(Scripted(error_body(404, f"no route {self.path}"), status=404))
            return
        with self.server.lock:
            self.server.count += 1
            if self.server.record:
                self.server.requests.append(request)
        try:
            reply = responder(request)
        except Exception as exc:  # a responder bug becomes a 500, as a real server would send
            reply = Scripted(error_body(500, f"{type(exc).__name__}: {exc}"), status=500)
        self._send(reply)


class _Server(ThreadingHTTPServer):
    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
            except OSError:  # a client that does not trust the certificate hangs up mid-handshake
                return
        super().finish_request(request, client_address)

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, responder: Responder, model_name: str, record: bool, completions: Responder | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.completions = completions
        self.model_name = model_name
        self.record = record
        self.count = 0
        self.requests: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.models = True
        self.tls: Any = None  # an ssl.SSLContext: each connection is wrapped in its own thread
        self.lock = threading.Lock()


class ChatServer:
    """Serve `responder` on 127.0.0.1 at a free port while the context is open.

    `responder` answers chat requests (POST /v1/chat/completions); `completions`, when given, answers text
    completion requests (POST /v1/completions, a body with `prompt` instead of `messages`), which are otherwise
    404. Every request body is kept in `requests` unless `record` is off; `count` and GET /v1/stats count them.
    """

    def __init__(
        self,
        responder: Responder,
        model_name: str = "test-model",
        record: bool = True,
        completions: Responder | None = None,
    ) -> None:
        self._server = _Server(responder, model_name, record, completions)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._scheme = "http"

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"{self._scheme}://127.0.0.1:{port}/v1"

    def with_tls(self, certfile: str, keyfile: str) -> ChatServer:
        """Serve HTTPS with this certificate (before start), as an endpoint behind a private CA does."""
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self._server.tls = context
        self._scheme = "https"
        return self

    @property
    def count(self) -> int:
        with self._server.lock:
            return self._server.count

    @property
    def calls(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every HTTP request received (method, path with query, headers by lower-case name), when recording."""
        with self._server.lock:
            return list(self._server.calls)

    def without_models(self) -> ChatServer:
        """Answer GET /models with 404, as a base_url that is not the API root does."""
        self._server.models = False
        return self

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request bodies received so far (chat, and completions when served), in arrival order."""
        with self._server.lock:
            return list(self._server.requests)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
