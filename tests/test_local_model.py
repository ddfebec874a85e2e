"""The embedded local model for real: llama.cpp's server with SmolLM2-135M, through the same client.

`make test` installs llama-cpp-python, so a missing package is a failure here, not a skip. Set
EVOLAB_SKIP_LOCAL_MODEL=1 to skip these tests deliberately (e.g. on a machine that cannot build it).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from conftest import free_port

from evolab.llm import LLMClient, OpenAICompatibleBackend
from evolab.llm.local import LOCAL_MODEL_ALIAS, LocalServer, is_serving

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.environ.get("EVOLAB_SKIP_LOCAL_MODEL") == "1",
                                reason="EVOLAB_SKIP_LOCAL_MODEL=1")


def test_llama_cpp_is_installed_at_the_pinned_version_with_its_server():
    try:
        import llama_cpp
        import llama_cpp.server  # noqa: F401  (the [server] extra: fastapi, uvicorn...)
    except ImportError as e:
        pytest.fail(f"llama-cpp-python[server] is not importable ({e}): `make install` builds it; "
                    f"set EVOLAB_SKIP_LOCAL_MODEL=1 to skip the local-model tests on purpose.")
    pinned = (ROOT / "requirements-local.txt").read_text()
    assert f"=={llama_cpp.__version__}" in pinned, f"installed {llama_cpp.__version__}, pinned:\n{pinned}"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.fail(f"llama-cpp-python is not importable ({e}): `make install` builds it; "
                    f"set EVOLAB_SKIP_LOCAL_MODEL=1 to skip the local-model tests on purpose.")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVOLAB_HOME", str(tmp_path_factory.mktemp("evolab-home")))  # the server log goes here
        server = LocalServer(port=free_port())
        try:
            url = server.ensure(timeout=120)
            assert url == f"http://127.0.0.1:{server.port}/v1"
            yield server
        finally:
            server.stop()


def test_completion_from_the_embedded_model(local_server, store):
    assert local_server.started_here
    backend = OpenAICompatibleBackend(model=LOCAL_MODEL_ALIAS, base_url=local_server.base_url, api_key_env=None,
                                      timeout_s=60.0, max_retries=1)
    client = LLMClient(backend, store)

    async def go():
        try:
            return await client.complete([{"role": "user", "content": "Name one colour of the sky."}],
                                         purpose="respond", temperature=0.0, max_tokens=16)
        finally:
            await client.aclose()
    comp = asyncio.run(go())
    assert comp.text.strip()
    assert 0 < comp.completion_tokens <= 16
    assert comp.prompt_tokens > 0
    assert comp.cost_usd == 0.0 and comp.price_known  # the local model is free, and known to be
    (call,) = store.calls()
    assert call.error is None and call.model == LOCAL_MODEL_ALIAS and call.completion_tokens == comp.completion_tokens


def test_ensure_reuses_a_running_server(local_server):
    other = LocalServer(port=local_server.port)
    assert other.ensure(timeout=10) == local_server.base_url
    assert not other.started_here and other.process is None  # no second process
    other.stop()  # stops only what it started: the server still answers
    assert is_serving(local_server.port)
    assert local_server.started_here


def test_stop_terminates_the_server(local_server):
    process = local_server.process
    assert process is not None and process.poll() is None
    local_server.stop()
    assert process.poll() is not None  # the process has exited
    assert not local_server.started_here
    deadline = time.time() + 5
    while is_serving(local_server.port, timeout=0.5) and time.time() < deadline:
        time.sleep(0.1)
    assert not is_serving(local_server.port)
    with pytest.raises(OSError):  # nothing listens on the port any more
        socket.create_connection(("127.0.0.1", local_server.port), timeout=1).close()
