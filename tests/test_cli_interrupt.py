"""Ctrl-C during a CLI run: exit status 130 (as README says), a message naming the resume command, and
a run that `resume` finishes."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
from test_cli import ROOT, SEED_LINES, _child_nodes, cli, env, stub_args  # noqa: F401  (env is a fixture)

from evolab.llm.fake import scripted_reply
from evolab.store import Store
from evolab.testing.stub_server import StubServer


class _HoldAfterFirstChild:
    """The scripted model, but once the run has stored a child every reply waits until the test has sent
    Ctrl-C: the run is certainly mid-way when it is interrupted, however fast or slow the machine."""

    def __init__(self, db):
        self.db, self.interrupted, self.holding = db, threading.Event(), threading.Event()

    def __call__(self, messages, purpose):
        if not self.interrupted.is_set() and _child_nodes(self.db) >= 1:
            self.holding.set()
            self.interrupted.wait(120)
        return scripted_reply(messages, purpose)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_exits_130_and_the_run_resumes_at_once(env, tmp_path, sig):
    """Ctrl-C (SIGINT) or `kill PID` (SIGTERM): exit 130, the resume command named, and the run lease released, so
    `resume` goes on at once (no --take-over, no waiting for the lease to expire)."""
    seeds_file = tmp_path / "three.txt"
    seeds_file.write_text("\n".join(SEED_LINES[:3]) + "\n", encoding="utf-8")
    db = tmp_path / "interrupted.db"
    gate = _HoldAfterFirstChild(db)
    with StubServer(handler=gate) as stub:
        cmd = [sys.executable, "-m", "evolab", "run", str(seeds_file), "--db", str(db),
               *map(str, stub_args(stub)), "--rounds", "3", "--concurrency", "1", "--seed", "3"]
        # A shell without job control starts background jobs with SIGINT ignored (POSIX), and a Python started so
        # keeps ignoring it: give the CLI the default disposition a terminal's foreground process has.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert gate.holding.wait(120), "the run never stored a child"
            assert proc.poll() is None, "the run finished before it could be interrupted"
            proc.send_signal(sig)  # what Ctrl-C sends, or `kill`
            gate.interrupted.set()  # the calls in flight are answered, as a real endpoint would
            _, err = proc.communicate(timeout=120)
        finally:
            gate.interrupted.set()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "python -m evolab resume" in err and "Traceback" not in err

        r = cli(env, "resume", "--db", db)
        assert r.returncode == 0, r.stderr
    store = Store(db)
    try:
        run_id = store.latest_run_id()
        assert store.get_run(run_id)["status"] == "finished"
        assert len([n for n in store.nodes(run_id) if n.round == 3]) == 3
    finally:
        store.close()
