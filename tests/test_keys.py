"""Keys and endpoints: the OpenAI key goes only to api.openai.com itself; the app listens on 127.0.0.1; the
app reads only key-like variable names; error texts are stored with keys masked; and the request cache is
keyed by endpoint (two servers serving the same model name never share answers)."""
from __future__ import annotations

import asyncio
import subprocess
import tomllib

import pytest
from conftest import ROOT, STUB_KEY, openai_backend_for

from evolab.app import support as app_support
from evolab.app.support import Settings
from evolab.engine import pipeline
from evolab.llm import LLMClient, LLMError, OpenAICompatibleBackend
from evolab.llm.base import mask_secrets
from evolab.llm.client import make_backend
from evolab.llm.openai_backend import PLACEHOLDER_KEY, key_env_allowed, resolve_api_key
from evolab.schema import RunConfig, Seed
from evolab.testing.stub_server import StubServer

OPENAI_KEY = "sk-proj-realLookingKey0123456789"


# -- the OpenAI key goes to api.openai.com only ------------------------------------------------------------
@pytest.mark.parametrize("url", [None, "https://api.openai.com/v1", "https://api.openai.com/v1/",
                                 "https://API.OpenAI.com/v1", "https://api.openai.com:443/v1"])
def test_openai_key_goes_to_openai(monkeypatch, url):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert resolve_api_key(None, url) == OPENAI_KEY


@pytest.mark.parametrize("url", ["https://api.openai.com.evil.example/v1", "https://evil.example/api.openai.com/v1",
                                 "https://api.openai.com@evil.example/v1", "https://evil.example/v1?h=api.openai.com",
                                 "https://xapi.openai.com/v1", "http://api.openai.com/v1", "http://localhost:8000/v1",
                                 "not a url"])
def test_openai_key_never_goes_elsewhere(monkeypatch, url):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    assert resolve_api_key(None, url) == PLACEHOLDER_KEY


def test_the_placeholder_is_what_a_lookalike_host_receives(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with StubServer() as stub:
        backend = OpenAICompatibleBackend(model="gpt-4o-mini", base_url=stub.base_url)

        async def go():
            try:
                await backend.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=8)
            finally:
                await backend.aclose()
        asyncio.run(go())
        (req,) = stub.chat_requests()
        assert req["headers"]["authorization"] == f"Bearer {PLACEHOLDER_KEY}"


# -- the app listens on 127.0.0.1 -------------------------------------------------------------------------------
def test_the_app_listens_on_localhost_unless_told_otherwise():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "--server.address 127.0.0.1" in dry
    dry = subprocess.run(["make", "-n", "run", "ADDRESS=0.0.0.0"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    assert "--server.address 0.0.0.0" in dry
    assert "ADDRESS=0.0.0.0" in (ROOT / "README.md").read_text()


# -- which variables the app may read ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "MY_API_KEY", "ANTHROPIC_KEY", "HF_TOKEN", "together_api_key"])
def test_key_like_names_are_accepted(name):
    assert key_env_allowed(name)
    assert Settings(base_url="http://localhost:8000/v1", model="m", api_key_env=name).problems() == []


@pytest.mark.parametrize("name", ["PATH", "HOME", "DATABASE_URL", "AWS_SECRET_ACCESS", "KEY", "MY_KEYS",
                                  "TOKEN_FILE", "EVOLAB_DB"])
def test_other_names_are_refused_by_the_app(name, monkeypatch):
    monkeypatch.setenv(name, "some-value")
    s = Settings(base_url="http://localhost:8000/v1", model="m", api_key_env=name)
    assert not key_env_allowed(name)
    (problem,) = s.problems()
    assert "_API_KEY" in problem and "EVOLAB_KEY_VARS" in problem
    assert s.key_status().startswith("not read")
    # Even a run config made some other way is refused by the backend when the name came from the app.
    with pytest.raises(LLMError, match="EVOLAB_KEY_VARS"):
        make_backend(s.run_config())


def test_evolab_key_vars_allows_more_names(monkeypatch):
    monkeypatch.setenv("EVOLAB_KEY_VARS", "DATABASE_URL, VLLM_SECRET")
    monkeypatch.setenv("VLLM_SECRET", "abc")
    assert key_env_allowed("DATABASE_URL") and key_env_allowed("VLLM_SECRET") and not key_env_allowed("PATH")
    s = Settings(base_url="http://localhost:8000/v1", model="m", api_key_env="VLLM_SECRET")
    assert s.problems() == [] and s.key_status() == "VLLM_SECRET is set"
    assert make_backend(s.run_config()).model == "m"


def test_the_command_line_may_name_any_variable(monkeypatch):
    """The CLI user runs in their own shell with their own environment: no name is refused there."""
    monkeypatch.setenv("MY_SECRET", "abc")
    cfg = RunConfig(model="m", base_url="http://localhost:8000/v1", api_key_env="MY_SECRET")
    assert cfg.restrict_key_env is False
    assert make_backend(cfg).model == "m"
    assert Settings(api_key_env="OPENAI_API_KEY").run_config().restrict_key_env is True


# -- error texts are stored with keys masked -----------------------------------------------------------------------
@pytest.mark.parametrize("text,secret", [
    ("Incorrect API key provided: sk-proj-abcdefghijklmnop1234.", "sk-proj-abcdefghijklmnop1234"),
    ("Authorization: Bearer abc.def-ghi_jkl123456 was refused", "abc.def-ghi_jkl123456"),
    ("invalid key: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("api_key=QUJDREVGR0hJSktMTU5PUFFSU1RVVldY1== rejected", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY1=="),
    ('{"token": "hf_abcdefghijklmnopqrstuvwxyz12"}', "hf_abcdefghijklmnopqrstuvwxyz12"),
    ("AKIAABCDEFGHIJKLMNOP is not allowed", "AKIAABCDEFGHIJKLMNOP"),
])
def test_mask_secrets(text, secret):
    masked = mask_secrets(text)
    assert secret not in masked and "***" in masked


@pytest.mark.parametrize("text", [
    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "The model gpt-4o-mini-2024-07-18 does not exist", "check the key variable (401)",
    "Rate limit reached for requests: limit 500, used 500"])
def test_ordinary_error_texts_are_left_alone(text):
    assert mask_secrets(text) == text


def _leaky_handler(secret: str):
    def handler(messages, purpose):
        raise RuntimeError(f"bad credentials: got {secret} (Authorization: Bearer {secret}), "
                           f"key=9f8e7d6c5b4a39281706f5e4d3c2b1a0")
    return handler


def test_errors_that_echo_the_key_are_stored_masked(store, monkeypatch):
    plain = "plainSecretWithoutDigitsAtAll"  # no pattern would spot it: masked because it is the key read
    monkeypatch.setenv("MY_API_KEY", plain)
    with StubServer(handler=_leaky_handler(plain)) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env="MY_API_KEY", rounds=1,
                           max_retries=0)
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], config)
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, api_key_env="MY_API_KEY", max_retries=0))
    texts = [c.error for c in store.calls(run_id) if c.error]
    texts += [n.detail for n in store.nodes(run_id) if n.detail]
    texts += [store.get_run(run_id)["error"] or ""]
    texts += [str(v) for v in app_support.node_detail(store, store.nodes(run_id)[-1].id).calls["error"]]
    assert texts and any("bad credentials" in t for t in texts)
    for t in texts:
        assert plain not in t and "9f8e7d6c5b4a39281706f5e4d3c2b1a0" not in t


def test_the_stub_key_is_masked_too(store):
    with StubServer(handler=_leaky_handler(STUB_KEY)) as stub:
        client = LLMClient(openai_backend_for(stub, max_retries=0), store)

        async def go():
            try:
                await client.complete([{"role": "user", "content": "hi"}], purpose="respond")
            finally:
                await client.aclose()
        with pytest.raises(LLMError) as info:
            asyncio.run(go())
    assert STUB_KEY not in str(info.value) and "bad credentials" in str(info.value)
    (call,) = store.calls()
    assert STUB_KEY not in call.error


# -- the request cache is keyed by endpoint --------------------------------------------------------------------------
def _answers(name):
    def handler(messages, purpose):
        return f"Answer from server {name}."
    return handler


def test_two_servers_with_the_same_model_name_never_share_answers(store):
    msg = [{"role": "user", "content": "Who are you?"}]

    def ask(stub):
        client = LLMClient(openai_backend_for(stub, "same-model"), store)

        async def go():
            try:
                return await client.complete(msg, purpose="respond", max_tokens=50)
            finally:
                await client.aclose()
        return asyncio.run(go())

    with StubServer(handler=_answers("A")) as a, StubServer(handler=_answers("B")) as b:
        first_a, first_b = ask(a), ask(b)
        assert first_a.text == "Answer from server A." and not first_a.cached
        assert first_b.text == "Answer from server B." and not first_b.cached  # not A's cached answer
        again_a, again_b = ask(a), ask(b)
        assert (again_a.text, again_a.cached) == ("Answer from server A.", True)
        assert (again_b.text, again_b.cached) == ("Answer from server B.", True)
        assert a.count() == 1 and b.count() == 1
        assert first_a.request_hash != first_b.request_hash


def test_two_runs_on_two_servers_get_their_own_answers(store):
    seeds = [Seed("Explain why the sky is blue."), Seed("Write a short poem about the sea.")]

    def handler(name):
        from evolab.llm import scripted_reply

        def h(messages, purpose):
            reply = scripted_reply(messages, purpose)
            return f"{reply} (from {name})" if purpose == "respond" else reply
        return h

    with StubServer(handler=handler("A")) as a, StubServer(handler=handler("B")) as b:
        runs = {}
        for name, stub in (("A", a), ("B", b)):
            config = RunConfig(model="same-model", base_url=stub.base_url, rounds=1, structured="off")
            runs[name] = pipeline.create_run(store, seeds, config)
            assert pipeline.run_sync(store, runs[name], backend=openai_backend_for(stub, "same-model")) == "finished"
        assert b.count() == a.count() > 0  # B answered every call itself, none came from A's cache
    for name, run_id in runs.items():
        answers = [n.response for n in store.nodes(run_id) if n.response]
        assert answers and all(r.endswith(f"(from {name})") for r in answers)
        assert not [c for c in store.calls(run_id) if c.cached]
