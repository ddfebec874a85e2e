"""Diversity opens fast for runs made with the CLI: `run` (and `resume`) embed the run and fit its map at
the end unless --no-warm, `report` leaves the same caches warm, and the page then has nothing left to do;
while it does have work, the page says which stage it is in."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, clean, stub_module  # noqa: F401
from test_cli import cli, env, stub_args  # noqa: F401 (fixtures)

from evolab.analysis import frames as analysis
from evolab.analysis.report import write_report
from evolab.store import Store


@pytest.fixture
def seeds_file(tmp_path):
    """One seed: a run of two nodes, so the map is laid out without a UMAP fit (whose JIT costs half a
    minute in every new process); what is warmed, cached and shown is the same for any size."""
    path = tmp_path / "one.txt"
    path.write_text("Explain why the sky is blue.\n", encoding="utf-8")
    return path


@pytest.fixture
def warm_env(env, stub):
    """CLI environment with the warm-up on and the stub's embeddings endpoint as the model (fast)."""
    env = dict(env, EVOLAB_WARM="1", EVOLAB_EMBED_BASE_URL=stub.base_url, EVOLAB_EMBED_MODEL="stub-embed",
               EVOLAB_EMBED_KEY_ENV="EVOLAB_STUB_KEY")
    return env


def _work(db, monkeypatch, stub):
    monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", stub.base_url)
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "stub-embed")
    monkeypatch.setenv("EVOLAB_EMBED_KEY_ENV", "EVOLAB_STUB_KEY")
    store = Store(db)
    try:
        return analysis.map_work(store, store.latest_run_id())
    finally:
        store.close()


def test_a_cli_run_leaves_the_map_ready(warm_env, stub, seeds_file, tmp_path, monkeypatch):
    db = tmp_path / "w.db"
    r = cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1)
    assert r.returncode == 0, r.stderr
    assert "Preparing the Diversity map: embedding" in r.stderr and "Diversity map ready" in r.stderr
    assert any(r["path"].endswith("/embeddings") for r in stub.requests)
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}


def test_no_warm_skips_it(warm_env, stub, seeds_file, tmp_path, monkeypatch):
    db = tmp_path / "c.db"
    r = cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1, "--no-warm")
    assert r.returncode == 0, r.stderr
    assert "Diversity map" not in r.stderr
    work = _work(db, monkeypatch, stub)
    assert work["to_embed"] > 0 and work["to_fit"]


def test_report_warms_the_same_caches(warm_env, stub, seeds_file, tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    assert cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1, "--no-warm").returncode == 0
    assert _work(db, monkeypatch, stub)["to_fit"]
    store = Store(db)
    try:  # what `python -m evolab report` calls
        write_report(store, store.latest_run_id(), tmp_path / "r.html")
    finally:
        store.close()
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}


def test_the_page_shows_its_stage_while_it_works_and_nothing_once_warm(warm_env, stub, seeds_file, tmp_path,
                                                                      monkeypatch):
    db = tmp_path / "p.db"
    assert cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1, "--no-warm").returncode == 0
    monkeypatch.setenv("EVOLAB_DB", str(db))
    for var in ("EVOLAB_EMBED_BASE_URL", "EVOLAB_EMBED_MODEL", "EVOLAB_EMBED_KEY_ENV"):
        monkeypatch.setenv(var, warm_env[var])
    at = clean(AppTest.from_file(APP, default_timeout=120).run())
    at = clean(at.switch_page("pages/diversity.py").run())
    assert [st_.proto.label for st_ in at.status] == ["Map ready"]  # was "Preparing the map of 2 instructions"
    bars = " ".join(p.proto.text for p in at.get("progress"))
    assert "Fitting the map (UMAP)" in bars or "Embedding instruction" in bars
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}
    at = clean(AppTest.from_file(APP, default_timeout=120).run())
    at = clean(at.switch_page("pages/diversity.py").run())
    assert not at.get("progress") and not at.status  # warm: no stage to show
