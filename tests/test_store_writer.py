"""The store never stalls the requests: while another process holds SQLite's write lock for seconds, a run
keeps sending requests, and every step still lands in the store once the lock is released."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

from conftest import openai_backend_for

from evolab.engine import pipeline
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")  # the write lock, as a second evolab process mid-transaction would hold it
print("locked", flush=True)
if sys.argv[2] == "stdin":  # held until the test says so (a line on stdin)
    sys.stdin.readline()
else:
    time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""
REQUESTS_WHILE_LOCKED = 10


def test_a_second_process_holding_the_write_lock_does_not_stop_requests_in_flight(tmp_path):
    db = tmp_path / "evolab.db"
    store = Store(db)
    seeds = [Seed(f"Explain topic number {i} in two paragraphs.") for i in range(12)]
    with StubServer(latency=0.05) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=3, concurrency=4)
        run_id = pipeline.create_run(store, seeds, config)
        locker = None
        during = []

        def release_after_requests(at_lock: int) -> None:
            """Holds the lock until REQUESTS_WHILE_LOCKED more requests reached the stub (a run that stalled on
            the lock never sends them: released after 120 s then, and the count below says so)."""
            deadline = time.monotonic() + 120
            while stub.count() < at_lock + REQUESTS_WHILE_LOCKED and time.monotonic() < deadline:
                time.sleep(0.01)
            during.append(stub.count() - at_lock)
            locker.stdin.write("go\n")
            locker.stdin.flush()

        def lock_once(progress):
            nonlocal locker
            if locker is None and progress["done"] >= 2:  # the run is under way
                locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "stdin"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                assert locker.stdout.readline().strip() == "locked"
                threading.Thread(target=release_after_requests, args=(stub.count(),), daemon=True).start()

        status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, timeout_s=30.0),
                                   progress=lock_once)
        locker.wait(timeout=150)
    assert status == "finished"
    # Requests kept flowing while the file was locked (the lock is held until they came).
    assert during and during[0] >= REQUESTS_WHILE_LOCKED, during
    # And nothing was lost: every step of the run is in the store.
    children = [n for n in store.nodes(run_id) if n.round]
    assert len(children) == 12 * 3 and all(n.status in ("kept", "eliminated") for n in children)
    assert len(store.calls(run_id)) == stub.count()
    store.close()


def test_writes_queued_together_share_one_transaction_and_a_failed_one_rolls_back_alone(tmp_path):
    """The writer commits the writes waiting in its queue together (issue 9: less CPU per call). A write that
    fails inside such a batch is rolled back on its own: the others land, its future and flush() raise."""
    import pytest

    from evolab.schema import LLMCall

    db = tmp_path / "evolab.db"
    store = Store(db)
    store.set_meta("warm", "1")
    store.submit("set_meta", "first", "1").result()  # the writer thread is up
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "stdin"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    # While another process holds the lock, one write waits for it and the rest queue up behind it.
    futures = [store.submit("add_call", LLMCall(purpose="evolve", model="m", run_id="r", node_id=f"n{i}"))
               for i in range(50)]
    bad = store.submit("set_meta", "broken", None)  # NOT NULL: fails
    futures += [store.submit("cache_put", f"k{i}", "m", {"text": str(i)}) for i in range(50)]
    assert not any(f.done() for f in futures)  # nothing is resolved before it is committed
    locker.stdin.write("go\n")  # the other process commits and lets go of the lock
    locker.stdin.flush()
    with pytest.raises(Exception):
        store.flush()
    locker.wait(timeout=30)
    assert all(f.done() and f.exception() is None for f in futures)
    assert bad.exception() is not None
    assert len(store.calls("r")) == 50
    assert [store.cache_get(f"k{i}") for i in (0, 49)] == [{"text": "0"}, {"text": "49"}]
    assert store.get_meta("broken") is None
    store.close()
