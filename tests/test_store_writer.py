"""The store never stalls the requests: while another process holds SQLite's write lock for seconds, a run
keeps sending requests, and every step still lands in the store once the lock is released."""
from __future__ import annotations

import subprocess
import sys
import time

from conftest import openai_backend_for
from evolab import pipeline
from evolab.llm.stub_server import StubServer
from evolab.schema import RunConfig, Seed
from evolab.store import Store

HOLD_S = 4.0
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")  # the write lock, as a second evolab process mid-transaction would hold it
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_second_process_holding_the_write_lock_does_not_stop_requests_in_flight(tmp_path):
    db = tmp_path / "evolab.db"
    store = Store(db)
    seeds = [Seed(f"Explain topic number {i} in two paragraphs.") for i in range(12)]
    with StubServer(latency=0.05) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=3, concurrency=4)
        run_id = pipeline.create_run(store, seeds, config)
        locker = None

        def lock_once(progress):
            nonlocal locker
            if locker is None and progress["done"] >= 2:  # the run is under way
                locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(HOLD_S)],
                                          stdout=subprocess.PIPE, text=True)
                assert locker.stdout.readline().strip() == "locked"
                lock_once.window = (time.time(), time.time() + HOLD_S)

        status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, timeout_s=5.0),
                                   progress=lock_once)
        locker.wait(timeout=30)
        start, end = lock_once.window
        during = [r for r in stub.chat_requests() if start + 0.5 <= r["time"] <= end - 0.5]
    assert status == "finished"
    # Requests kept flowing while the file was locked: at concurrency 4 and 50 ms a request, dozens a second.
    assert len(during) >= 10, len(during)
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
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "1.5"], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    # While another process holds the lock, one write waits for it and the rest queue up behind it.
    futures = [store.submit("add_call", LLMCall(purpose="evolve", model="m", run_id="r", node_id=f"n{i}"))
               for i in range(50)]
    bad = store.submit("set_meta", "broken", None)  # NOT NULL: fails
    futures += [store.submit("cache_put", f"k{i}", "m", {"text": str(i)}) for i in range(50)]
    assert not any(f.done() for f in futures)  # nothing is resolved before it is committed
    with pytest.raises(Exception):
        store.flush()
    locker.wait(timeout=30)
    assert all(f.done() and f.exception() is None for f in futures)
    assert bad.exception() is not None
    assert len(store.calls("r")) == 50
    assert [store.cache_get(f"k{i}") for i in (0, 49)] == [{"text": "0"}, {"text": "49"}]
    assert store.get_meta("broken") is None
    store.close()
