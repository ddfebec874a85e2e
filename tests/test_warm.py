"""Diversity opens fast for runs made with the CLI: `run` (and `resume`) start a detached process that embeds the
run and fits its map once the run is stored, unless --no-warm (EVOLAB_WARM=wait does it before returning);
`report` leaves the same caches warm, and the page then has nothing left to do; while a warm-up is alive the page
waits on it, and while the page itself has work, it says which stage it is in."""
from __future__ import annotations

import os
import signal
import time

import pytest
from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, clean, stub_module  # noqa: F401
from test_cli import cli, env, stub_args  # noqa: F401 (fixtures)

from evolab.analysis import frames as analysis
from evolab.analysis import warmup
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


def wait_for_warm_up(db, timeout: float = 180) -> dict:
    """Poll the store until the run's background warm-up has ended and its process is gone; end it (by its pid,
    which this test started) if it has not by `timeout`, so no process outlives the test or holds its store."""
    if not os.path.exists(db):
        return {}
    store = Store(db)
    run_id = store.latest_run_id()
    deadline = time.monotonic() + timeout
    try:
        while run_id is not None:
            state = warmup.read_state(store, run_id) or {}
            if not state:  # the CLI has returned: no state means no warm-up was started
                return state
            pid = int(state.get("pid") or 0)
            if state.get("state") in (warmup.DONE, warmup.FAILED) and not (pid and warmup._alive(pid)):
                return state
            if time.monotonic() > deadline:
                if pid and warmup._alive(pid):
                    os.kill(pid, signal.SIGTERM)
                pytest.fail(f"the warm-up did not end in {timeout:.0f} s: {state}")
            time.sleep(0.2)
        return {}
    finally:
        store.close()


def test_a_cli_run_returns_when_stored_and_a_background_process_leaves_the_map_ready(warm_env, stub, seeds_file,
                                                                                    tmp_path, monkeypatch):
    db = tmp_path / "w.db"
    try:
        r = cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1)
    finally:  # whatever happens below, the background process ends before the test does
        state = wait_for_warm_up(db)
    assert r.returncode == 0, r.stderr
    assert "[finished]" in r.stdout  # the summary, printed once the last step was stored
    assert "Preparing the Diversity map in the background (process" in r.stderr
    assert "Preparing the Diversity map: embedding" not in r.stderr  # not in the foreground
    assert state["state"] == warmup.DONE, state
    assert any(r["path"].endswith("/embeddings") for r in stub.requests)
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}
    store = Store(db)
    try:
        assert warmup.warm_state(store, store.latest_run_id()) is None  # done: nothing for the page to wait on
    finally:
        store.close()
    assert "map ready" in warmup.log_path(str(db), state_run_id(db)).read_text(encoding="utf-8")


def state_run_id(db) -> str:
    store = Store(db)
    try:
        return store.latest_run_id()
    finally:
        store.close()


def test_warm_wait_prepares_the_map_before_the_command_returns(warm_env, stub, seeds_file, tmp_path, monkeypatch):
    db = tmp_path / "f.db"
    r = cli(dict(warm_env, EVOLAB_WARM="wait"), "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1)
    assert r.returncode == 0, r.stderr
    assert "Preparing the Diversity map: embedding" in r.stderr and "Diversity map ready" in r.stderr
    assert "in the background" not in r.stderr
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}


def test_the_page_waits_on_a_live_warm_up_instead_of_embedding_again(warm_env, stub, seeds_file, tmp_path,
                                                                     monkeypatch):
    db = tmp_path / "live.db"
    assert cli(warm_env, "run", seeds_file, "--db", db, *stub_args(stub), "--rounds", 1, "--no-warm").returncode == 0
    run_id = state_run_id(db)
    store = Store(db)
    # a warm-up in progress: this process stands in for it (alive for the whole test, nothing to clean up)
    warmup.write_state(store, run_id, state=warmup.RUNNING, stage="embedding", done=1, total=2, pid=os.getpid(),
                       host=warmup.socket.gethostname())
    monkeypatch.setenv("EVOLAB_DB", str(db))
    for var in ("EVOLAB_EMBED_BASE_URL", "EVOLAB_EMBED_MODEL", "EVOLAB_EMBED_KEY_ENV"):
        monkeypatch.setenv(var, warm_env[var])
    before = len(stub.requests)
    at = clean(AppTest.from_file(APP, default_timeout=120).run())
    at = clean(at.switch_page("pages/diversity.py").run())
    assert any("being prepared by the warm-up" in i.value for i in at.info)
    assert "embedding 1 of 2 instructions" in " ".join(p.proto.text for p in at.get("progress"))
    assert not any(r["path"].endswith("/embeddings") for r in stub.requests[before:])  # it did not embed again
    # the warm-up's process is gone without a word (killed): no longer in progress, the page computes the map
    warmup.write_state(store, run_id, state=warmup.RUNNING, stage="embedding", done=1, total=2, pid=2 ** 22 + 7,
                       host=warmup.socket.gethostname())
    assert warmup.warm_state(store, run_id) is None
    at = clean(AppTest.from_file(APP, default_timeout=120).run())
    at = clean(at.switch_page("pages/diversity.py").run())
    assert not any("being prepared by the warm-up" in i.value for i in at.info)
    assert _work(db, monkeypatch, stub) == {"to_embed": 0, "to_fit": False}
    store.close()


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
