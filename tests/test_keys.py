"""Keys and endpoints: the OpenAI key goes only to api.openai.com itself; the app listens on 127.0.0.1; the
app reads only the key variables its allow-list names (never a cloud's or a code host's secret), in its whole
process whatever a store says; a judge or optimizer on another server never inherits a run's key variable; error
texts are stored with keys masked; and the request cache is keyed by endpoint (two servers serving the same model
name never share answers)."""
from __future__ import annotations

import asyncio
import subprocess
import tomllib

import pytest
from conftest import ROOT, STUB_KEY, STUB_KEY_ENV, openai_backend_for

from evolab.app import support as app_support
from evolab.app import worker
from evolab.app.support import Settings
from evolab.audit import tuning
from evolab.cli.main import main as cli_main
from evolab.engine import pipeline
from evolab.llm import LLMClient, LLMError, OpenAICompatibleBackend
from evolab.llm.base import mask_secrets
from evolab.llm.client import make_backend
from evolab.llm.openai_backend import (
    PLACEHOLDER_KEY,
    key_env_allowed,
    key_names_restricted,
    resolve_api_key,
    restrict_key_names,
    with_endpoint,
)
from evolab.schema import RunConfig, Seed
from evolab.store import Store
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
@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "MY_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY",
                                  "together_api_key"])
def test_provider_key_names_are_accepted(name):
    assert key_env_allowed(name)
    assert Settings(base_url="http://localhost:8000/v1", model="m", api_key_env=name).problems() == []


@pytest.mark.parametrize("name", ["PATH", "HOME", "DATABASE_URL", "AWS_SECRET_ACCESS", "KEY", "MY_KEYS",
                                  "TOKEN_FILE", "EVOLAB_DB", "ANTHROPIC_KEY", "HF_TOKEN", "DEPLOY_TOKEN",
                                  "SESSION_KEY"])
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
    monkeypatch.setenv("EVOLAB_KEY_VARS", "HF_TOKEN, VLLM_SECRET")
    monkeypatch.setenv("VLLM_SECRET", "abc")
    assert key_env_allowed("HF_TOKEN") and key_env_allowed("VLLM_SECRET") and not key_env_allowed("PATH")
    s = Settings(base_url="http://localhost:8000/v1", model="m", api_key_env="VLLM_SECRET")
    assert s.problems() == [] and s.key_status() == "VLLM_SECRET is set"
    assert make_backend(s.run_config()).model == "m"


# Credentials of other services, by their usual names: refused whatever their suffix, even when listed.
CLOUD_SECRETS = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                 "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEJr//////////wEaDEXAMPLEsessionTOKEN",
                 "GITHUB_TOKEN": "ghp_R8exampleGithubTokenValue0123456789ab",
                 "GH_TOKEN": "gho_R8exampleGithubTokenValue0123456789ab",
                 "AZURE_OPENAI_API_KEY": "azureKeyExampleValue0123456789abcdef",
                 "GOOGLE_API_KEY": "AIzaSyExampleGoogleKeyValue0123456789",
                 "GCP_SERVICE_KEY": "gcpServiceKeyExampleValue0123456789"}


@pytest.mark.parametrize("listed", [False, True], ids=["by-suffix", "listed-in-EVOLAB_KEY_VARS"])
@pytest.mark.parametrize("name", sorted(CLOUD_SECRETS))
def test_a_cloud_secret_never_reaches_the_url_typed_into_the_app(name, listed, store, monkeypatch):
    """The issue's finding 1: AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and GITHUB_TOKEN passed the sidebar's
    allow-list by their suffix, and the run's first call (the endpoint check) sent the value as a bearer token."""
    secret = CLOUD_SECRETS[name]
    monkeypatch.setenv(name, secret)
    if listed:
        monkeypatch.setenv("EVOLAB_KEY_VARS", f"{STUB_KEY_ENV},{name}")
    with StubServer() as stub:
        s = Settings(db_path=str(store.path), base_url=stub.base_url, model="gpt-4o-mini", api_key_env=name)
        assert not key_env_allowed(name)
        (problem,) = s.problems()
        assert f"never reads {name!r}" in problem and "even when listed" in problem
        assert s.key_status().startswith("not read")
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], s.run_config(rounds=1))
        with pytest.raises(LLMError, match="never reads"):
            pipeline.run_sync(store, run_id)  # the backend the run builds from its stored config
        assert stub.requests == []  # not even the endpoint check


def test_the_command_line_may_name_any_variable(monkeypatch):
    """The CLI user runs in their own shell with their own environment: no name is refused there."""
    monkeypatch.setenv("MY_SECRET", "abc")
    cfg = RunConfig(model="m", base_url="http://localhost:8000/v1", api_key_env="MY_SECRET")
    assert cfg.restrict_key_env is False
    assert make_backend(cfg).model == "m"
    assert Settings(api_key_env="OPENAI_API_KEY").run_config().restrict_key_env is True


# -- a store's run config never widens what the app may send ----------------------------------------------------
def test_the_app_restricts_its_whole_process():
    """app.py turns the restriction on for its process: from then on a run config's own flag cannot lift it."""
    from streamlit.testing.v1 import AppTest  # Streamlit only where a test drives the app

    assert not key_names_restricted(False)
    AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert key_names_restricted(False)


def test_resuming_someone_elses_store_in_the_app_follows_the_apps_rules(tmp_path, monkeypatch):
    """A store made elsewhere says restrict_key_env=False for a variable the app may not read: resumed in the app,
    the run fails before any request, with the app's words; the CLI (the user's own shell) still may."""
    secret = "deployTokenValue0123456789abcdef"
    monkeypatch.setenv("DEPLOY_TOKEN", secret)
    db = str(tmp_path / "foreign.db")
    with StubServer() as stub:
        foreign = Store(db)
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env="DEPLOY_TOKEN", rounds=1,
                           restrict_key_env=False)
        run_id = pipeline.create_run(foreign, [Seed("Explain why the sky is blue.")], config)
        foreign.close()
        restrict_key_names()  # what app.py does
        job = worker.start(db, run_id, warm_analysis=False)
        worker.wait(run_id)
        assert job.status == "failed" and "EVOLAB_KEY_VARS" in job.error and "DEPLOY_TOKEN" in job.error
        assert stub.requests == []
        again = Store(db)
        try:
            assert again.get_run(run_id)["status"] == "failed"
            assert "EVOLAB_KEY_VARS" in again.get_run(run_id)["error"]
        finally:
            again.close()


# -- a changed base URL never inherits a key variable -------------------------------------------------------------
RUN_KEY = "sk-run-serverA-key-0123456789abcdef"
OTHER_KEY = "sk-other-serverB-key-0123456789abcd"


@pytest.fixture
def judged_run(tmp_path, monkeypatch):
    """A one-round run made against server A with A's key variable; the test judges it elsewhere."""
    monkeypatch.setenv("RUN_API_KEY", RUN_KEY)
    monkeypatch.setenv("OTHER_API_KEY", OTHER_KEY)
    db = str(tmp_path / "judge.db")
    with StubServer() as a:
        store = Store(db)
        config = RunConfig(model="gpt-4o-mini", base_url=a.base_url, api_key_env="RUN_API_KEY", rounds=1,
                           structured="off")
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue."),
                                             Seed("Write a short poem about the sea.")], config)
        assert pipeline.run_sync(store, run_id) == "finished"
        assert {r["headers"]["authorization"] for r in a.requests} == {f"Bearer {RUN_KEY}"}
        store.close()
        yield db, run_id, a


def _auths(stub: StubServer) -> set[str]:
    return {r["headers"].get("authorization") for r in stub.requests}


def test_judge_on_another_server_does_not_get_the_runs_key(judged_run, capsys):
    db, run_id, _ = judged_run
    with StubServer() as b:
        assert cli_main(["judge", "--db", db, "--run", run_id, "--rounds", "0,1", "--base-url", b.base_url,
                         "--model", "judge-model"]) == 0
        assert b.requests and RUN_KEY not in str([r["headers"] for r in b.requests])
        assert _auths(b) == {f"Bearer {PLACEHOLDER_KEY}"}
    err = capsys.readouterr().err
    assert "RUN_API_KEY is not sent" in err and "--api-key-env" in err


def test_judge_on_another_server_gets_the_key_named_for_it(judged_run):
    db, run_id, _ = judged_run
    with StubServer() as b:
        assert cli_main(["judge", "--db", db, "--run", run_id, "--rounds", "0,1", "--base-url", b.base_url,
                         "--model", "judge-model", "--api-key-env", "OTHER_API_KEY"]) == 0
        assert _auths(b) == {f"Bearer {OTHER_KEY}"}


def test_judge_with_another_model_on_the_runs_own_server_keeps_its_key(judged_run):
    db, run_id, a = judged_run
    before = len(a.requests)
    assert cli_main(["judge", "--db", db, "--run", run_id, "--rounds", "0,1", "--model", "judge-model"]) == 0
    assert len(a.requests) > before and _auths(a) == {f"Bearer {RUN_KEY}"}
    assert cli_main(["judge", "--db", db, "--run", run_id, "--rounds", "0,1", "--base-url", a.base_url + "/",
                     "--model", "judge-model-2"]) == 0  # the same server, written another way
    assert _auths(a) == {f"Bearer {RUN_KEY}"}


@pytest.mark.parametrize("other,expected", [
    ("http://evil.example:8000/v1", None),
    ("https://api.openai.com/v1", None),  # then OPENAI_API_KEY, for OpenAI itself only (resolve_api_key)
    ("http://127.0.0.1:9/v1", None),  # the same host, another port: another server
    ("http://127.0.0.1:8000/v1/", "RUN_API_KEY"),
    ("HTTP://127.0.0.1:8000/other", "RUN_API_KEY"),
    (None, "RUN_API_KEY"),  # another model on the run's own endpoint
])
def test_a_changed_base_url_never_inherits_the_key_variable(other, expected):
    run = RunConfig(model="m", base_url="http://127.0.0.1:8000/v1", api_key_env="RUN_API_KEY")
    config, note = with_endpoint(run, base_url=other, model="judge")
    assert config.api_key_env == expected and config.model == "judge"
    assert (note is not None) == (expected is None)
    # The tuning session's optimizer follows the same rule (a session stored with only --base-url/--model).
    assert tuning._optimizer_config(run, {"optimizer": {"base_url": other, "model": "judge"}}).api_key_env == expected
    assert tuning._optimizer_config(run, {"optimizer": {"base_url": other, "api_key_env": "OTHER_API_KEY"}}
                                    ).api_key_env == "OTHER_API_KEY"


def test_a_name_given_on_the_command_line_is_not_restricted_by_the_store():
    """An app-made run judged from the CLI with --api-key-env: the name is the CLI user's, not the store's."""
    run = RunConfig(model="m", base_url="http://127.0.0.1:8000/v1", api_key_env="MY_API_KEY", restrict_key_env=True)
    assert with_endpoint(run, model="j")[0].restrict_key_env is True
    assert with_endpoint(run, base_url="http://b:1/v1", api_key_env="B_SECRET")[0].restrict_key_env is False


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
