"""Shared fixtures: an OpenAI-compatible stub server, a store on a temporary file, a fake backend.

`openai_backend_for(stub, ...)` is a plain helper (import it: `from conftest import openai_backend_for`,
or use the `backend_for` fixture, which returns the same function).
"""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without installing evolab
    sys.path.insert(0, str(ROOT))

from evolab.llm import (  # noqa: E402
    FakeBackend,
    OpenAICompatibleBackend,
    pricing,  # noqa: E402
)
from evolab.llm import openai_backend  # noqa: E402
from evolab.store import Store  # noqa: E402
from evolab.testing.stub_server import StubServer  # noqa: E402

# The key variable tests use against the stub; its value is set for every test (see _test_environment).
STUB_KEY_ENV = "EVOLAB_STUB_KEY"
STUB_KEY = "sk-stub-test-key"


@pytest.fixture(autouse=True)
def _test_environment(monkeypatch):
    """No real key can leak to a stub, every test has a stub key, and price overrides do not leak
    from one test to the next."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv(STUB_KEY_ENV, STUB_KEY)
    monkeypatch.setenv("EVOLAB_WARM", "0")  # CLI runs skip preparing the Diversity map (test_warm.py turns it on)
    # The app's background warm-up loads torch and umap in a thread of the test process, and those imports swap
    # sys.stderr under pytest's capture (a later test's print then hits a closed file): no test relies on it.
    monkeypatch.setenv("EVOLAB_APP_WARMUP", "0")
    monkeypatch.setattr(pricing, "_overrides", dict(pricing._overrides))
    # The stub's key variable is one the server's owner allowed; app.py's restriction of its process ends with the test.
    monkeypatch.setenv("EVOLAB_KEY_VARS", STUB_KEY_ENV)
    monkeypatch.setattr(openai_backend, "_RESTRICTED_PROCESS", False)


@pytest.fixture
def stub():
    """A StubServer started for the test and stopped after it."""
    with StubServer() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    """A Store on `tmp_path / "evolab.db"`."""
    s = Store(tmp_path / "evolab.db")
    yield s
    s.close()


@pytest.fixture
def fake_backend():
    return FakeBackend()


def openai_backend_for(stub: StubServer, model: str = "gpt-4o-mini", *, api_key_env: str | None = STUB_KEY_ENV,
                       timeout_s: float = 1.0, max_retries: int = 3, **kw) -> OpenAICompatibleBackend:
    """The real OpenAI-compatible backend pointed at the stub, with test-sized timeouts."""
    return OpenAICompatibleBackend(model=model, base_url=stub.base_url, api_key_env=api_key_env,
                                   timeout_s=timeout_s, max_retries=max_retries, **kw)


@pytest.fixture
def backend_for():
    return openai_backend_for


def free_port() -> int:
    """A TCP port nobody listens on right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AllInFlight:
    """A stub `latency` (or a handler's first line) that holds the first `n` chat requests until all `n` are in
    the stub at once, then lets every request through after `then_s` seconds. A test that asserts "n calls were
    in flight together" waits on that condition instead of hoping a fixed latency outlasts the client's sending
    (which a loaded machine need not do). A client that never has `n` calls in flight leaves them waiting
    `timeout_s`, then they go on (`met` stays False, and the test's count of calls in flight shows it).
    `skip`: requests let through before (a run's structured-output probe goes alone, before its calls).
    Give the client a timeout above `timeout_s`."""

    def __init__(self, n: int, then_s: float = 0.0, timeout_s: float = 60.0, skip: int = 0):
        self.n, self.then_s = n, then_s
        self.barrier = threading.Barrier(n, timeout=timeout_s)
        self.met = False
        self._skip, self._left = skip, n
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            if self._skip > 0:
                self._skip -= 1
                return self.then_s
            held, self._left = self._left > 0, self._left - 1
        if held:
            try:
                self.barrier.wait()
                self.met = True
            except threading.BrokenBarrierError:
                pass
        return self.then_s
