"""A run's lease (issue 22, finding 5): one engine per run, in any process.

Before it, two `resume`s of one run (two terminals, or a terminal and the app's Resume) both ran: the calls not
yet cached were paid twice and both wrote nodes. Now the second engine is refused with a message naming the
holder (host, pid, since when) and how to take over; a released lease is taken at once; a lease whose holder
stopped beating is taken over after its expiry, by one taker only; and a run killed with SIGKILL is taken over by
a waiting `resume --wait` only once its lease expired, ending with the calls of a clean run.
"""
from __future__ import annotations

import asyncio
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import streamlit as st
from conftest import STUB_KEY_ENV
from streamlit.testing.v1 import AppTest
from test_cli import (
    ROOT,
    SEED_LINES,
    _canonical,
    _child_nodes,
    _GateAfterTwoChildren,
    _requests_with_key,
    cli,
    env,  # noqa: F401 - the fixture
    stub_args,
)

from evolab.app import worker
from evolab.app.support import Settings, progress_info, running_elsewhere
from evolab.engine import batch, pipeline
from evolab.engine.lease import EXPIRY_ENV, LeaseError, LeaseHeld, LeaseLost, RunLease, expiry_seconds
from evolab.llm.fake import FakeBackend
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

SEEDS = [Seed(s) for s in SEED_LINES[:3]]
APP = str(ROOT / "app.py")


class Gated(FakeBackend):
    """The scripted model, but every reply waits until the test opens the gate: the run is mid-way, holding its
    lease, for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__(model="gpt-4o-mini")
        self.entered, self.open = threading.Event(), threading.Event()

    async def complete(self, messages, **kw):
        self.entered.set()
        await asyncio.to_thread(self.open.wait, 60)
        return await super().complete(messages, **kw)


class Interrupting(FakeBackend):
    def __init__(self, error: BaseException) -> None:
        super().__init__(model="gpt-4o-mini")
        self.error = error

    async def complete(self, messages, **kw):
        raise self.error


def make_run(store: Store, stub: StubServer, rounds: int = 2) -> str:
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=rounds,
                       concurrency=2)
    return pipeline.create_run(store, SEEDS, config)


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def work() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, out


def age_lease(store: Store, run_id: str, seconds: float) -> None:
    """The holder's last heartbeat `seconds` earlier: what a killed holder's row looks like that much later."""
    with store.transaction() as c:
        c.execute("UPDATE run_leases SET heartbeat = heartbeat - ? WHERE run_id=?", (seconds, run_id))


def node_count(store: Store, run_id: str) -> int:
    return len(store.nodes(run_id))


def names_the_holder(message: str, host: str, pid: int) -> None:
    assert f"host {host}, pid {pid}, since " in message, message
    assert "last heartbeat" in message and "--wait" in message and "--take-over" in message, message


# -- in one process --------------------------------------------------------------------------------------------
def test_a_second_engine_in_the_same_process_is_refused_naming_the_holder_then_runs_once_released(store, stub):
    run_id = make_run(store, stub)
    first = Gated()
    thread, out = in_thread(pipeline.run_sync, store, run_id, backend=first)
    other_store = Store(store.path)
    try:
        assert first.entered.wait(60), "the first engine never called its model"
        nodes = node_count(store, run_id)
        # The same Store object (a notebook's second cell) and another one on the same file (the app's worker).
        for s in (store, other_store):
            second = FakeBackend(model="gpt-4o-mini")
            with pytest.raises(LeaseHeld) as refused:
                pipeline.run_sync(s, run_id, backend=second)
            names_the_holder(str(refused.value), socket.gethostname(), os.getpid())
            assert second.requests == []
            with pytest.raises(LeaseHeld):  # batch mode: the same lease
                batch.run_batched(s, run_id, backend=second)
            assert second.requests == []
        assert node_count(store, run_id) == nodes  # the refused engines wrote nothing
        assert store.get_run(run_id)["status"] == "running"  # and left the running engine's status alone
        assert running_elsewhere(other_store, run_id).startswith(f"host {socket.gethostname()}, pid {os.getpid()}")
    finally:
        first.open.set()
        thread.join(60)
    assert out.get("result") == "finished", out
    assert store.lease(run_id) is None  # released at the end
    # A released lease is taken at once: the resume runs (every call is cached: none is made again).
    again = FakeBackend(model="gpt-4o-mini")
    assert pipeline.run_sync(other_store, run_id, backend=again) == "finished"
    assert again.requests == [] and stub.count() == 0
    other_store.close()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("the endpoint broke")])
def test_the_lease_is_released_however_the_engine_ends(store, stub, error):
    run_id = make_run(store, stub)
    with pytest.raises(type(error)):
        pipeline.run_sync(store, run_id, backend=Interrupting(error))
    assert store.lease(run_id) is None
    assert pipeline.run_sync(store, run_id, backend=FakeBackend(model="gpt-4o-mini")) == "finished"


def test_an_expired_lease_is_taken_over_a_live_one_is_not(store, stub):
    run_id = make_run(store, stub)
    # A holder on another machine that stopped beating (killed, or its machine went down): its row stays.
    taken, _ = store.take_lease(run_id, host="gpu-box-7", pid=4242, token="theirs", expiry_s=30)
    assert taken
    with pytest.raises(LeaseHeld) as refused:  # still live: 0 s since its heartbeat
        pipeline.run_sync(store, run_id, backend=FakeBackend(model="gpt-4o-mini"))
    names_the_holder(str(refused.value), "gpu-box-7", 4242)
    assert "30 s without a heartbeat" in str(refused.value)
    age_lease(store, run_id, 29)
    with pytest.raises(LeaseHeld):  # within its expiry
        pipeline.run_sync(store, run_id, backend=FakeBackend(model="gpt-4o-mini"))
    age_lease(store, run_id, 2)  # 31 s without a heartbeat: expired
    assert pipeline.run_sync(store, run_id, backend=FakeBackend(model="gpt-4o-mini")) == "finished"
    assert store.lease(run_id) is None


def test_two_takers_of_an_expired_lease_cannot_both_take_it(store, stub):
    run_id = make_run(store, stub)
    stores = [Store(store.path) for _ in range(6)]
    try:
        for attempt in range(3):
            store.take_lease(run_id, host="gone", pid=1, token=f"dead-{attempt}", expiry_s=1)
            age_lease(store, run_id, 5)
            barrier = threading.Barrier(len(stores))
            leases = [RunLease(s, run_id, expiry_s=30) for s in stores]

            def take(lease: RunLease):
                barrier.wait(30)
                return lease.try_take()

            threads = [in_thread(take, lease) for lease in leases]
            for t, _ in threads:
                t.join(60)
            winners = [lease for lease, (_, out) in zip(leases, threads) if out["result"] is None]
            assert len(winners) == 1, [out for _, out in threads]
            assert store.lease(run_id)["token"] == winners[0].token
            for _, out in threads:  # the losers name the winner, not the dead holder
                assert out["result"] is None or out["result"]["token"] == winners[0].token
            winners[0].release()
            assert store.lease(run_id) is None
    finally:
        for s in stores:
            s.close()


def test_an_engine_whose_lease_was_taken_over_stops_and_says_so(store, stub, monkeypatch):
    monkeypatch.setenv(EXPIRY_ENV, "0.4")  # a heartbeat every 0.1 s
    run_id = make_run(store, stub, rounds=3)
    first, stop = Gated(), threading.Event()
    thread, out = in_thread(pipeline.run_sync, store, run_id, backend=first, stop_event=stop)
    other = Store(store.path)
    try:
        assert first.entered.wait(60)
        thief = RunLease(other, run_id, expiry_s=30, take_over=True).acquire()  # `--take-over` on a live holder
        assert thief.previous["pid"] == os.getpid()
        assert stop.wait(60), "the engine's heartbeat never noticed its lease was gone"
    finally:
        first.open.set()
        thread.join(60)
    assert isinstance(out.get("error"), LeaseLost), out
    assert "another took the run over" in str(out["error"]) and f"pid {os.getpid()}" in str(out["error"])
    assert other.lease(run_id)["token"] == thief.token  # the stopped engine left the new holder's lease alone
    thief.release()
    other.close()


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "nan", "inf"])
def test_a_bad_expiry_setting_is_named(monkeypatch, raw):
    monkeypatch.setenv(EXPIRY_ENV, raw)
    with pytest.raises(LeaseError, match=EXPIRY_ENV):
        expiry_seconds()


# -- the app -------------------------------------------------------------------------------------------------------
def test_the_app_worker_refused_by_a_lease_leaves_the_run_alone(tmp_path, stub):
    db = str(tmp_path / "app.db")
    store = Store(db)
    run_id = make_run(store, stub)
    store.set_run_status(run_id, "running")
    store.take_lease(run_id, host="laptop", pid=777, token="cli", expiry_s=30)
    job = worker.start(db, run_id, backend_factory=lambda: FakeBackend(model="gpt-4o-mini"), warm_analysis=False)
    job = worker.wait(run_id, 60)
    assert job is not None and not job.alive and job.status == "failed"
    names_the_holder(job.error, "laptop", 777)
    assert store.get_run(run_id)["status"] == "running"  # not marked failed: the other engine's run
    assert node_count(store, run_id) == 0  # refused before the engine wrote anything
    assert progress_info(store, run_id)["elsewhere"].startswith("host laptop, pid 777")
    store.close()


@pytest.fixture
def _navigation_mode(monkeypatch):
    """As tests/test_app.py: start AppTest in the mode a server is in after its first run."""
    from streamlit.runtime.pages_manager import PagesManager

    init = PagesManager.__init__

    def init_v2(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_v2)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def test_the_runs_page_shows_a_run_leased_elsewhere_and_offers_no_resume(tmp_path, stub, monkeypatch,
                                                                         _navigation_mode):
    monkeypatch.setenv("EVOLAB_APP_WARMUP", "0")
    db = str(tmp_path / "page.db")
    store = Store(db)
    run_id = make_run(store, stub)
    store.set_run_status(run_id, "running")
    store.take_lease(run_id, host="laptop", pid=777, token="cli", expiry_s=30)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["settings"] = Settings(db_path=db, base_url=stub.base_url, model="gpt-4o-mini",
                                            api_key_env=STUB_KEY_ENV)
    at.query_params["run"] = run_id
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    infos = " ".join(str(i.value) for i in at.info)
    assert "Running elsewhere: host laptop, pid 777, since" in infos
    labels = [b.label for b in at.button]
    assert not [x for x in labels if x in ("Start", "Resume to the end") or x.startswith("Run through round")], labels
    assert [b.disabled for b in at.button if b.label == "Running elsewhere"] == [True]
    # The holder released it (its run ended or was killed and the lease expired): Resume is offered again.
    store.release_lease(run_id, "cli")
    at.run()
    labels = [b.label for b in at.button]
    assert "Resume to the end" in labels and "Running elsewhere" not in labels, labels
    assert "Running elsewhere" not in " ".join(str(i.value) for i in at.info)
    store.close()


# -- two processes: the CLI ---------------------------------------------------------------------------------------
def test_resume_in_another_process_exits_2_naming_the_holder(store, stub, env):  # noqa: F811
    run_id = make_run(store, stub)
    first = Gated()
    thread, out = in_thread(pipeline.run_sync, store, run_id, backend=first)
    try:
        assert first.entered.wait(60)
        nodes = node_count(store, run_id)
        r = cli(env, "resume", "--db", store.path, "--run", run_id, "--budget-usd", 3)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
        names_the_holder(r.stderr, socket.gethostname(), os.getpid())
        assert stub.count() == 0 and node_count(store, run_id) == nodes
        assert store.get_run(run_id)["config"].budget_usd is None  # nothing written, not even the new budget
    finally:
        first.open.set()
        thread.join(60)
    assert out.get("result") == "finished", out


def test_take_over_a_lease_whose_process_is_gone(store, stub, env):  # noqa: F811
    run_id = make_run(store, stub)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that ran here and exited
    store.set_run_status(run_id, "running")
    store.take_lease(run_id, host=socket.gethostname(), pid=pid, token="killed", expiry_s=600)
    r = cli(env, "resume", "--db", store.path, "--run", run_id)
    assert r.returncode == 2 and f"no process {pid} runs on this host now" in r.stderr, r.stderr
    assert stub.count() == 0
    r = cli(env, "resume", "--db", store.path, "--run", run_id, "--take-over")
    assert r.returncode == 0, r.stderr
    assert f"Took the run over from host {socket.gethostname()}, pid {pid}" in r.stderr
    assert store.get_run(run_id)["status"] == "finished" and store.lease(run_id) is None


def test_a_bad_expiry_setting_stops_resume_with_exit_2(store, stub, env):  # noqa: F811
    run_id = make_run(store, stub)
    r = cli({**env, EXPIRY_ENV: "soon"}, "resume", "--db", store.path, "--run", run_id)
    assert r.returncode == 2 and EXPIRY_ENV in r.stderr and "'soon'" in r.stderr, r.stderr
    assert stub.count() == 0 and store.get_run(run_id)["status"] == "created"


# -- the acceptance: SIGKILL while a second resume waits ---------------------------------------------------
def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def _wait_for_line(lines: queue.Queue, seen: list[str], pattern: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def test_a_run_killed_with_sigkill_is_taken_over_by_a_waiting_resume_only_once_its_lease_expired(env, tmp_path):  # noqa: F811
    expiry = 4.0
    env = {**env, EXPIRY_ENV: str(expiry)}
    seeds_file = tmp_path / "three.txt"
    seeds_file.write_text("\n".join(SEED_LINES[:3]) + "\n", encoding="utf-8")
    args = ["--rounds", 3, "--concurrency", 2, "--seed", 9]
    killed_db, ref_db = tmp_path / "killed.db", tmp_path / "ref.db"
    keys = {"killed": "sk-stub-killed", "waiting": "sk-stub-waiting", "ref": "sk-stub-ref"}
    gate = _GateAfterTwoChildren(killed_db)
    with StubServer(handler=gate) as stub:
        holder = subprocess.Popen([sys.executable, "-m", "evolab", "run", str(seeds_file), "--db", str(killed_db),
                                   *map(str, stub_args(stub) + args)], cwd=ROOT,
                                  env={**env, STUB_KEY_ENV: keys["killed"]},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waiter = None
        lines: queue.Queue = queue.Queue()
        seen: list[str] = []
        try:
            assert gate.blocked.wait(120), "the run never got to its 30th request"
            deadline = time.monotonic() + 120
            while _child_nodes(killed_db) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a condition: the writer stores the steps whose replies came back
            assert _child_nodes(killed_db) >= 2, "the run never stored two children"
            waiter = subprocess.Popen([sys.executable, "-m", "evolab", "resume", "--wait", "--db", str(killed_db)],
                                      cwd=ROOT, env={**env, STUB_KEY_ENV: keys["waiting"]},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            threading.Thread(target=_lines, args=(waiter.stderr, lines), daemon=True).start()
            waiting = _wait_for_line(lines, seen, r"being run by another engine")
            assert f"pid {holder.pid}," in waiting and "Waiting until it ends or its lease expires" in waiting
            assert holder.poll() is None and waiter.poll() is None
            assert _requests_with_key(stub, keys["waiting"]) == 0  # the waiter sent nothing while the holder lived
            holder.kill()  # SIGKILL: no cleanup, no release, no final status
        finally:
            holder.wait(timeout=30)
            gate.killed.set()  # from here on every request is answered at once
        assert holder.returncode == -9
        took = _wait_for_line(lines, seen, r"Took the run over", timeout=180)
        assert waiter.wait(timeout=180) == 0, "".join(seen) + waiter.stdout.read()
        # It took over only once the lease had expired: the killed holder's last heartbeat was that long ago.
        m = re.search(rf"from host \S+, pid {holder.pid} \(no heartbeat for ([\d.]+) s; its lease expires after "
                      rf"{expiry:g} s\)", took)
        # (the message gives the gap to 0.1 s, so a gap just over the expiry reads as the expiry itself)
        assert m and float(m.group(1)) >= expiry, took
        paid = _requests_with_key(stub, keys["killed"]) + _requests_with_key(stub, keys["waiting"])

        r = cli({**env, STUB_KEY_ENV: keys["ref"]}, "run", seeds_file, "--db", ref_db, *stub_args(stub), *args)
        assert r.returncode == 0, r.stderr
        ref_total = _requests_with_key(stub, keys["ref"])

    killed, ref = Store(killed_db), Store(ref_db)
    try:
        run_id, got = _canonical(killed)
        _, want = _canonical(ref)
        assert got == want  # the same nodes as a clean run
        assert killed.get_run(run_id)["status"] == "finished" and killed.lease(run_id) is None

        def paid_calls(store: Store) -> Counter:
            return Counter(c.request_hash for c in store.calls(store.latest_run_id()) if not c.cached and not c.error)

        # The calls stored are a clean run's, each once: the killed run's calls in flight were paid again by the
        # one that took over (paid >= the clean run's requests), never stored twice, and no call was made twice
        # while both processes lived (the waiter sent nothing until the kill, checked above).
        assert paid_calls(killed) == paid_calls(ref)
        assert paid >= ref_total
    finally:
        killed.close()
        ref.close()
