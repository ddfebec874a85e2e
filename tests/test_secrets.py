"""Secrets in what is stored and shown: a run's error is stored with keys masked whatever raised it (the engine, the
app's job), and a base URL's `user:pass@` credentials never appear in the report, the dataset card, embedder names,
the Runs page's table and captions, the sidebar, or the CLI's log."""
from __future__ import annotations

import pytest
from analysis_fixtures import HashEmbedder
from conftest import ROOT
from test_app import read_markdown
from hypothesis import given, settings
from hypothesis import strategies as st

from evolab.analysis.report import write_report
from evolab.app import support as app_support
from evolab.app import worker
from evolab.app.support import Settings
from evolab.cli.main import main as cli_main
from evolab.embeddings.embed import OpenAIEmbedder, make_embedder
from evolab.engine import pipeline
from evolab.export.card import dataset_card
from evolab.llm.base import Completion, mask_secrets, redact_url
from evolab.llm.openai_backend import OpenAICompatibleBackend
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

PASSWORD = "hunter2pass"
LEAKY = (f"upstream proxy refused: Authorization: Bearer sk-live-abcdef1234567890XYZ via "
         f"http://bob:{PASSWORD}@proxy.internal:3128/v1")


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://bob:{PASSWORD}@", 1)


# -- redact_url -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,shown", [
    ("https://bob:hunter2pass@llm.example/v1", "https://***@llm.example/v1"),
    ("https://bob:hun@ter2pass@llm.example/v1", "https://***@llm.example/v1"),  # an unescaped @ in the password
    ("https://token@llm.example:8443/v1", "https://***@llm.example:8443/v1"),
    ("http://llm.example/v1?api_key=abc123&model=x", "http://llm.example/v1?api_key=***&model=x"),
    ("http://llm.example/v1?x=1&access_token=abc#f", "http://llm.example/v1?x=1&access_token=***#f"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("http://localhost:8000/v1?model=x", "http://localhost:8000/v1?model=x"),
    (None, None), ("", ""),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_mask_secrets_masks_url_credentials_in_any_text():
    masked = mask_secrets(LEAKY)
    assert PASSWORD not in masked and "sk-live-abcdef1234567890XYZ" not in masked
    assert "proxy.internal:3128" in masked  # where it went is still said
    assert mask_secrets("write to bob@example.com") == "write to bob@example.com"  # no scheme: not a URL


@settings(max_examples=300, deadline=None)
@given(user=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#@ \t\r\n"),
                    min_size=1, max_size=20),
       password=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?# \t\r\n"),
                        min_size=6, max_size=30),
       host=st.from_regex(r"[a-z][a-z0-9\-]{0,15}(\.[a-z]{2,6})?(:[0-9]{2,5})?", fullmatch=True))
def test_no_password_survives_redact_url(user, password, host):
    url = f"https://{user}:{password}@{host}/v1"
    shown = redact_url(url)
    assert shown == f"https://***@{host}/v1"
    assert mask_secrets(f"Cannot reach {url}: refused") == f"Cannot reach https://***@{host}/v1: refused"


# -- run errors are stored masked, whatever raised them --------------------------------------------------------------
class LeakyBackend:
    """A backend whose calls fail with an exception that is not an LLMError and repeats a key and a URL's password."""

    model = "leaky"
    endpoint = "leaky"

    async def complete(self, messages, *, temperature, max_tokens, purpose="", response_format=None) -> Completion:
        raise RuntimeError(LEAKY)

    async def aclose(self) -> None:
        pass


def _stored_texts(store: Store, run_id: str) -> str:
    run = store.get_run(run_id)
    return "\n".join([run["error"] or ""] + [c.error or "" for c in store.calls(run_id)]
                     + [n.detail or "" for n in store.nodes(run_id)])


def test_an_engine_error_is_stored_masked(store):
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], RunConfig(model="leaky", rounds=1))
    with pytest.raises(RuntimeError):
        pipeline.run_sync(store, run_id, backend=LeakyBackend())
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "upstream proxy refused" in run["error"]
    texts = _stored_texts(store, run_id)
    assert PASSWORD not in texts and "sk-live-abcdef1234567890XYZ" not in texts


def test_an_app_run_error_is_stored_and_shown_masked(tmp_path, capfd):
    db = str(tmp_path / "app.db")
    store = Store(db)
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], RunConfig(model="leaky", rounds=1))
    store.close()
    job = worker.start(db, run_id, backend_factory=LeakyBackend, warm_analysis=False)
    worker.wait(run_id)
    assert job.status == "failed" and "upstream proxy refused" in job.error
    store = Store(db)
    try:
        shown = app_support.progress_info(store, run_id, job)["error"]  # the Runs page: the stored error, else the job's
        for text in (job.error, shown, _stored_texts(store, run_id), capfd.readouterr().err):
            assert PASSWORD not in text and "sk-live-abcdef1234567890XYZ" not in text
    finally:
        store.close()


def test_an_error_stored_before_masking_is_shown_masked(store, tmp_path):
    """Stores written by an older evolab may hold an unmasked error: the Runs page and the report mask it."""
    run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], RunConfig(model="leaky", rounds=1))
    store.set_run_status(run_id, "failed", f"RuntimeError: {LEAKY}")
    assert PASSWORD not in app_support.progress_info(store, run_id)["error"]
    html = write_report(store, run_id, tmp_path / "report.html", embedder=HashEmbedder()).read_text()
    assert "upstream proxy refused" in html
    assert PASSWORD not in html and "sk-live-abcdef1234567890XYZ" not in html


# -- a base URL's credentials are never shown -------------------------------------------------------------------------
@pytest.fixture
def credentialed_run(tmp_path):
    """A finished run made against the stub through a base URL carrying user:pass@."""
    with StubServer() as stub:
        url = _with_credentials(stub.base_url)
        db = tmp_path / "cred.db"
        store = Store(db)
        config = RunConfig(model="gpt-4o-mini", base_url=url, rounds=1, structured="auto")
        run_id = pipeline.create_run(store, [Seed("Explain why the sky is blue.")], config)
        assert pipeline.run_sync(store, run_id) == "finished"
        yield store, run_id, url, stub
        store.close()


def test_the_report_card_and_runs_table_never_show_url_credentials(credentialed_run, tmp_path):
    store, run_id, url, _ = credentialed_run
    html = write_report(store, run_id, tmp_path / "report.html", embedder=HashEmbedder()).read_text()
    assert redact_url(url) in html and PASSWORD not in html
    card = str(dataset_card(store, run_id))
    assert "***@127.0.0.1" in card and PASSWORD not in card
    table = app_support.runs_frame(store)
    assert table["endpoint"].tolist() == [redact_url(url)]
    settings_ = Settings(db_path=str(store.path), base_url=url, model="gpt-4o-mini")
    assert PASSWORD not in settings_.endpoint_label and PASSWORD not in settings_.endpoint_id
    # The sidebar's structured-output line reads what the run's probe stored under the same masked endpoint.
    assert "not probed yet" not in settings_.structured_status(store)


def test_nothing_but_the_runs_own_config_stores_url_credentials(credentialed_run):
    """The run's config keeps the URL (a resume needs it); the cache, the probe's notes, calls and nodes do not."""
    store, run_id, url, stub = credentialed_run
    assert stub.requests
    tables = [r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")]
    found = []
    for table in tables:
        for row in store.query(f"SELECT * FROM {table}"):
            for column in row.keys():
                if table == "runs" and column == "config_json":
                    continue
                if PASSWORD in str(row[column]):
                    found.append(f"{table}.{column}")
    assert found == []


def test_the_backend_names_its_endpoint_without_credentials():
    backend = OpenAICompatibleBackend(model="m", base_url=f"https://bob:{PASSWORD}@llm.example/v1")
    assert backend.endpoint == "https://***@llm.example/v1"


def test_embedder_names_never_hold_url_credentials():
    embedder = make_embedder("text-embedding-3-small", base_url=f"https://bob:{PASSWORD}@emb.example/v1")
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.name == "text-embedding-3-small@https://***@emb.example/v1"
    # without credentials the name, and so the cached vectors, stay as they were
    assert make_embedder("m", base_url="http://emb.example/v1").name == "m@http://emb.example/v1"


def test_the_cli_log_never_shows_url_credentials(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Explain why the sky is blue."}\n')
    with StubServer() as stub:
        url = _with_credentials(stub.base_url)
        assert cli_main(["run", str(seeds), "--db", str(tmp_path / "cli.db"), "--rounds", "1",
                         "--base-url", url, "--model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr()
    assert "***@127.0.0.1" in out.err and PASSWORD not in out.err + out.out


def test_the_runs_page_caption_never_shows_url_credentials(credentialed_run):
    from streamlit.testing.v1 import AppTest  # Streamlit only where a test drives the app

    store, run_id, url, _ = credentialed_run
    run = store.get_run(run_id)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["settings"] = Settings(db_path=str(store.path))
    at.query_params["run"] = run_id
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    shown = read_markdown("\n".join(str(e.value) for kind in ("caption", "markdown", "error", "text", "dataframe")
                                     for e in getattr(at, kind)))  # as a person reads it
    assert f"model {run['config'].model} at http://***@127.0.0.1:" in shown
    assert PASSWORD not in shown and "bob" not in shown
