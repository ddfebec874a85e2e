"""The embedded local model for real: llama.cpp's server with SmolLM2-135M, through the same client.

`make test` installs llama-cpp-python, so a missing package is a failure here, not a skip. Set
EVOLAB_SKIP_LOCAL_MODEL=1 to skip these tests deliberately (e.g. on a machine that cannot build it).
"""
from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from conftest import free_port

from evolab.llm import LLMClient, OpenAICompatibleBackend
from evolab.llm.local import LOCAL_MODEL_ALIAS, LocalModelError, LocalServer, is_serving

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.environ.get("EVOLAB_SKIP_LOCAL_MODEL") == "1",
                                reason="EVOLAB_SKIP_LOCAL_MODEL=1")


def pinned_version() -> str:
    """The llama-cpp-python version requirements-local.txt pins (`llama-cpp-python[server]==X`)."""
    text = (ROOT / "requirements-local.txt").read_text(encoding="utf-8")
    pins = re.findall(r"^\s*llama-cpp-python(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", text, re.MULTILINE)
    assert len(pins) == 1, f"requirements-local.txt should pin llama-cpp-python once with ==, it reads:\n{text}"
    return pins[0]


def require_llama_cpp():
    """Import llama_cpp and its server; fail saying what to install when that is not possible.

    A failure, not a skip: `make test` installs it first, so in CI a missing package is a broken install."""
    try:
        import llama_cpp
        import llama_cpp.server  # noqa: F401  (the [server] extra: fastapi, uvicorn...)
    except Exception as e:  # ImportError, or OSError/RuntimeError when its compiled library does not load
        pytest.fail(f"llama-cpp-python[server]=={pinned_version()} is not usable here "
                    f"({type(e).__name__}: {e}). Install it with `make install` (part of `make test`; it "
                    f"builds the package from requirements-local.txt into .venv), or set "
                    f"EVOLAB_SKIP_LOCAL_MODEL=1 to skip the local-model tests on purpose.", pytrace=False)
    return llama_cpp


def test_llama_cpp_is_installed_at_the_pinned_version_with_its_server():
    llama_cpp = require_llama_cpp()
    pinned = pinned_version()
    assert llama_cpp.__version__ == pinned, (
        f"installed llama-cpp-python {llama_cpp.__version__}, requirements-local.txt pins {pinned}: "
        f"`rm .venv/.local-model && make install` installs the pinned one")


def start_local_server(attempts: int = 5) -> LocalServer:
    """A LocalServer this test started on a port of its own. The port is free when picked but the server binds
    it later: when another process took it meanwhile (ours exits, or another server already answers there)
    the start is retried on another port."""
    for _ in range(attempts):
        server = LocalServer(port=free_port())
        if is_serving(server.port, timeout=0.5):
            continue  # someone else's server took the port
        try:
            server.ensure(timeout=120)
        except LocalModelError:
            log = Path(os.environ["EVOLAB_HOME"], "local-server.log")
            if "address already in use" in log.read_text(errors="replace").lower():
                continue  # taken between the pick and the bind
            raise
        if server.started_here and _listening_pid(server.port) == server.process.pid:
            return server
        server.stop()
    pytest.fail(f"no free port for the embedded model server in {attempts} attempts")


def _listening_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port (Linux /proc), None when there is none."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    require_llama_cpp()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVOLAB_HOME", str(tmp_path_factory.mktemp("evolab-home")))  # the server log goes here
        server = start_local_server()
        try:
            assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
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


def test_stop_terminates_the_server(tmp_path, monkeypatch):
    """On a server of its own: stopping the module's server would leave the tests after it without one."""
    require_llama_cpp()
    monkeypatch.setenv("EVOLAB_HOME", str(tmp_path / "home"))
    server = start_local_server()
    process = server.process
    try:
        assert process is not None and process.poll() is None
        server.stop()
        assert process.poll() is not None  # the process has exited
        assert not server.started_here
        assert _listening_pid(server.port) is None  # nothing listens on the port any more: no one answers
        assert not is_serving(server.port)
    finally:
        server.stop()
