"""Ctrl-C during a CLI run: exit status 130 (as README says), a message naming the resume command, and
a run that `resume` finishes."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from evolab.llm.stub_server import StubServer
from evolab.store import Store
from test_cli import ROOT, SEED_LINES, _child_nodes, cli, env, stub_args  # noqa: F401  (env is a fixture)


def test_ctrl_c_exits_130_and_the_run_resumes(env, tmp_path):
    seeds_file = tmp_path / "three.txt"
    seeds_file.write_text("\n".join(SEED_LINES[:3]) + "\n", encoding="utf-8")
    db = tmp_path / "interrupted.db"
    with StubServer(latency=0.05) as stub:
        cmd = [sys.executable, "-m", "evolab", "run", str(seeds_file), "--db", str(db),
               *map(str, stub_args(stub)), "--rounds", "3", "--concurrency", "1", "--seed", "3"]
        # A shell without job control starts background jobs with SIGINT ignored (POSIX), and a Python started so
        # keeps ignoring it: give the CLI the default disposition a terminal's foreground process has.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.time() + 60
            while _child_nodes(db) < 1 and time.time() < deadline and proc.poll() is None:
                time.sleep(0.01)
            assert proc.poll() is None, "the run finished before it could be interrupted"
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            _, err = proc.communicate(timeout=60)
        finally:
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
