"""The headless CLI, run as a subprocess (`python -m evolab ...`) against the stub server: run, resume,
runs, export, seeds check, estimate; exit status 0 / 2 (bad input, named) / 1 (e.g. a dead endpoint);
a run killed with SIGKILL and resumed ends like an uninterrupted one without repeating a stored call."""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import STUB_KEY, STUB_KEY_ENV

from evolab.engine import pipeline
from evolab.llm.fake import scripted_reply
from evolab.store import Store
from evolab.testing.stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]
SEED_LINES = [
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "Give three tips for learning a new language.",
    "Describe how a bicycle gear system works.",
]


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["EVOLAB_HOME"] = str(tmp_path / "home")
    e.pop("EVOLAB_DEBUG", None)
    e.pop("EVOLAB_DB", None)
    # Never touch a local model server someone else runs: a port this test holds (bound, not listening, so
    # connections to it are refused and nobody else can take it while the test runs).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        e["EVOLAB_LOCAL_PORT"] = str(held.getsockname()[1])
        yield e


@pytest.fixture
def seeds_file(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"instruction": s, "skill": "general", "difficulty": i + 1}) + "\n"
                            for i, s in enumerate(SEED_LINES)), encoding="utf-8")
    return path


def cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evolab", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stub_args(stub, *, model="gpt-4o-mini"):
    return ["--base-url", stub.base_url, "--model", model, "--api-key-env", STUB_KEY_ENV]


# -- run, runs, resume ----------------------------------------------------------------------------------
def test_run_with_every_option_against_the_stub(stub, env, seeds_file, tmp_path):
    db = tmp_path / "cli.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 2, "--fanout", 2, "--ops", "constraints=2,deepen",
            *stub_args(stub), "--concurrency", 3, "--seed", 42, "--budget-usd", 5, "--language", "en",
            "--name", "cli-test")
    assert r.returncode == 0, r.stderr
    assert "cli-test" in r.stdout and "[finished]" in r.stdout and "kept" in r.stdout
    store = Store(db)
    try:
        (run_,) = store.list_runs()
        cfg = run_["config"]
        assert (run_["name"], run_["status"]) == ("cli-test", "finished")
        assert (cfg.model, cfg.base_url, cfg.api_key_env) == ("gpt-4o-mini", stub.base_url, STUB_KEY_ENV)
        assert (cfg.rounds, cfg.fanout, cfg.concurrency, cfg.random_seed, cfg.budget_usd, cfg.language) == \
            (2, 2, 3, 42, 5.0, "en")
        assert cfg.operation_weights == {"constraints": 2.0, "deepen": 1.0}
        nodes = store.nodes(run_["id"])
        assert len(nodes) == 4 + 8 + 16
        assert {n.operation for n in nodes if n.round} <= {"constraints", "deepen"}
        assert {(n.skill, n.seed_difficulty) for n in nodes if n.round == 0} == {("general", float(i + 1))
                                                                                  for i in range(4)}
        # Every request sent is stored; a request made again once its twin was answered is a cache hit, stored
        # as such and never sent (fan-out 2 gives the scripted model the same prompt twice: how many twins come
        # after their first depends on timing).
        assert len([c for c in store.calls(run_["id"]) if not c.cached]) == stub.count()
        assert stub.max_in_flight <= 3
    finally:
        store.close()
    # The key is read from the named variable and sent, never stored.
    assert all(req["headers"].get("authorization") == f"Bearer {STUB_KEY}" for req in stub.chat_requests())
    assert STUB_KEY.encode() not in db.read_bytes()

    r = cli(env, "runs", "--db", db)
    assert r.returncode == 0 and "cli-test" in r.stdout and "[finished]" in r.stdout


def test_rule_switches_and_language_auto_from_the_cli(stub, env, tmp_path):
    seeds = tmp_path / "ko.txt"
    seeds.write_text("피보나치 수열을 설명하세요.\nExplain recursion.\n", encoding="utf-8")
    db = tmp_path / "rules.db"
    r = cli(env, "run", seeds, "--db", db, "--rounds", 1, *stub_args(stub), "--rule-off", "refusal",
            "--rule-off", "prompt_leak", "--no-equal-judge", "--dedup", "--quality-filter", 4)
    assert r.returncode == 0, r.stderr
    store = Store(db)
    try:
        (run_,) = store.list_runs()
        rules = run_["config"].rules
        assert (rules.refusal, rules.prompt_leak, rules.use_equal_judge, rules.duplicate) == (False, False, False, True)
        assert (rules.quality_filter, rules.quality_min) == (True, 4.0)
        assert (rules.no_new_information, rules.empty_response) == (True, True)
        assert run_["config"].language == "auto"
        templates = {n.instruction[:4]: n.template for n in store.nodes(run_["id"]) if n.round}
        assert sorted(t[:3] for t in templates.values()) == ["en/", "ko/"]
    finally:
        store.close()
    assert stub.count("equal") == 0
    r = cli(env, "run", seeds, "--db", db, *stub_args(stub), "--rule-off", "bogus")
    assert r.returncode == 2 and "bogus" in r.stderr


def test_a_key_the_endpoint_requires_is_used(env, seeds_file, tmp_path):
    with StubServer(api_key=STUB_KEY) as stub:
        r = cli(env, "run", seeds_file, "--db", tmp_path / "k.db", "--rounds", 1, *stub_args(stub))
        assert r.returncode == 0, r.stderr
        assert all(q["status"] == 200 for q in stub.chat_requests())


def test_until_round_then_resume_and_runs(stub, env, seeds_file, tmp_path):
    db = tmp_path / "r.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 3, *stub_args(stub), "--until-round", 1)
    assert r.returncode == 0, r.stderr
    assert "[paused]" in r.stdout
    first = stub.count()
    r = cli(env, "resume", "--db", db)
    assert r.returncode == 0, r.stderr
    assert "[finished]" in r.stdout
    store = Store(db)
    try:
        run_id = store.latest_run_id()
        assert max(n.round for n in store.nodes(run_id)) == 3
        assert len(store.calls(run_id)) == stub.count()  # nothing asked twice
        assert stub.count() - first == 4 * 2 * 5
    finally:
        store.close()
    r = cli(env, "resume", "--db", db, "--run", run_id)  # nothing left to do: every step is reused
    assert r.returncode == 0 and stub.count() - first == 40
    r = cli(env, "runs", "--db", db)
    assert r.returncode == 0 and run_id in r.stdout


def test_budget_stop_exits_zero_and_says_so(stub, env, seeds_file, tmp_path):
    db = tmp_path / "b.db"
    r = cli(env, "run", seeds_file, "--db", db, "--rounds", 3, *stub_args(stub), "--budget-usd", "0.002")
    assert r.returncode == 0, r.stderr
    assert "[budget]" in r.stdout and "budget" in r.stderr.lower()
    store = Store(db)
    try:
        run_id = store.latest_run_id()
        assert store.get_run(run_id)["status"] == "budget" and store.run_cost(run_id) <= 0.002
    finally:
        store.close()
    r = cli(env, "resume", "--db", db, "--budget-usd", 1)
    assert r.returncode == 0 and "[finished]" in r.stdout


# -- seeds check and estimate -------------------------------------------------------------------------------
def test_seeds_check(env, seeds_file):
    r = cli(env, "seeds", "check", seeds_file)
    assert r.returncode == 0
    assert "OK" in r.stdout and "4 seeds" in r.stdout and "general" in r.stdout


def parse_estimate(text: str) -> dict[str, list[float]]:
    """Each row's calls, prompt tokens, output tokens, cost and time (seconds, read from "1 h 02 min", "3 min 05 s"
    or "27 s"); the last column, the cost as batch jobs (evolab/engine/batch.py), is not parsed here."""
    out = {}
    units = {"h": 3600, "min": 60, "s": 1}
    for line in text.splitlines():
        m = re.match(r"^(low|expected|high)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+((?:\d+ (?:h|min|s)\s?)+)\s+([\d.]+)"
                     r"(?:\s+(?:[\d.]+|unknown))?\s*$", line)
        if m:
            seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)", m.group(5)))
            out[m.group(1)] = [float(g.replace(",", "")) for g in m.group(2, 3, 4, 6)] + [float(seconds)]
    return out


@pytest.mark.parametrize("fanout", [1, 3])
def test_estimate_gives_an_ordered_range(env, seeds_file, fanout):
    r = cli(env, "estimate", seeds_file, "--rounds", 3, "--model", "gpt-4o-mini", "--fanout", fanout)
    assert r.returncode == 0, r.stderr
    est = parse_estimate(r.stdout)
    assert set(est) == {"low", "expected", "high"}
    for i in range(5):  # calls, prompt tokens, output tokens, cost, time
        assert est["low"][i] <= est["expected"][i] <= est["high"][i]
    assert est["expected"][3] > 0 and est["expected"][4] > 0
    assert "4 seeds x 3 rounds" in r.stdout and f"fan-out {fanout}" in r.stdout


def test_estimate_for_an_unpriced_model_says_so(env, seeds_file):
    r = cli(env, "estimate", seeds_file, "--rounds", 2, "--model", "my-private-model")
    assert r.returncode == 0 and "no price known" in r.stdout


# -- exit status 2 on bad input, with the problem named -------------------------------------------------------
def test_bad_input_exits_2_naming_the_problem(stub, env, seeds_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": \n', encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    db = tmp_path / "x.db"
    cases = [
        (["run", bad, "--db", db, *stub_args(stub)], ["bad.jsonl", "line 2"]),
        (["run", empty, "--db", db, *stub_args(stub)], ["empty.txt", "empty"]),
        (["seeds", "check", bad], ["bad.jsonl", "line 2"]),
        (["run", seeds_file, "--db", db, "--ops", "constraints,teleport", *stub_args(stub)], ["teleport"]),
        (["run", tmp_path / "nope.jsonl", "--db", db, *stub_args(stub)], ["nope.jsonl", "no such file"]),
        (["seeds", "check", tmp_path / "nope.txt"], ["nope.txt", "no such file"]),
        (["estimate", tmp_path / "nope.txt", "--rounds", 2, "--model", "gpt-4o-mini"], ["nope.txt"]),
        (["run", seeds_file, "--db", db, "--base-url", stub.base_url], ["--base-url", "--model"]),
        (["run", seeds_file, "--db", db, "--rounds", 0, *stub_args(stub)], ["--rounds"]),
        (["run", seeds_file, "--db", db, "--concurrency", 0, *stub_args(stub)], ["--concurrency"]),
        (["resume", "--db", tmp_path / "missing.db"], ["missing.db"]),
        (["export", "--db", tmp_path / "missing.db", "--format", "alpaca", "--out", tmp_path / "o.json"],
         ["missing.db"]),
    ]
    for args, words in cases:
        r = cli(env, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert r.stderr.startswith("error: ")
        for w in words:
            assert w.lower() in r.stderr.lower(), (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert stub.count() == 0  # nothing was sent
    assert not db.exists() or not Store(db).list_runs()


def test_unknown_run_id_and_usage_errors_exit_2(stub, env, seeds_file, tmp_path):
    db = tmp_path / "u.db"
    assert cli(env, "run", seeds_file, "--db", db, "--rounds", 1, *stub_args(stub)).returncode == 0
    r = cli(env, "resume", "--db", db, "--run", "no-such-run")
    assert r.returncode == 2 and "no-such-run" in r.stderr
    r = cli(env, "export", "--db", db, "--format", "yaml", "--out", tmp_path / "o")  # argparse's own check
    assert r.returncode == 2 and "yaml" in r.stderr


# -- exit status 1 otherwise ---------------------------------------------------------------------------------
class _DeadEndpoint:
    """A port this test holds (bound to 0 and read back, so nobody else can take it) where every connection is
    closed at once, unanswered; it counts the connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=10)


def test_dead_endpoint_exits_1_with_a_message(env, seeds_file, tmp_path):
    dead = _DeadEndpoint()
    try:
        port = dead.port
        r = cli(env, "run", seeds_file, "--db", tmp_path / "d.db", "--rounds", 1, "--model", "gpt-4o-mini",
                "--base-url", f"http://127.0.0.1:{port}/v1", timeout=120)
    finally:
        dead.close()
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert f"127.0.0.1:{port}" in r.stderr and "reach" in r.stderr.lower()
    assert "resume" in r.stderr  # says how to go on
    assert "Traceback" not in r.stderr
    # It gives up after the endpoint check and its one retry, not after a run's worth of retried calls.
    assert 1 <= dead.connections <= 2, dead.connections


def test_missing_key_variable_exits_1_naming_it(stub, env, seeds_file, tmp_path):
    env.pop("NO_SUCH_KEY_VAR", None)
    r = cli(env, "run", seeds_file, "--db", tmp_path / "k.db", "--rounds", 1, "--model", "gpt-4o-mini",
            "--base-url", stub.base_url, "--api-key-env", "NO_SUCH_KEY_VAR")
    assert r.returncode == 1 and "NO_SUCH_KEY_VAR" in r.stderr
    assert stub.count() == 0


# -- killed with SIGKILL, resumed ------------------------------------------------------------------------------------
def _child_nodes(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM nodes WHERE round > 0").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _canonical(store: Store) -> tuple[str, dict]:
    run_id = store.latest_run_id()
    run_ = store.get_run(run_id)
    nodes = store.nodes(run_id)
    by_id = {n.id: n for n in nodes}
    keys = {pipeline.seed_id(run_id, i): (i,) for i in range(len(run_["seeds"]))}

    def key(n):
        if n.id not in keys:
            slot = next(s for s in range(run_["config"].fanout)
                        if pipeline.child_id(run_id, n.parent_id, n.round, s) == n.id)
            keys[n.id] = key(by_id[n.parent_id]) + ((n.round, slot),)
        return keys[n.id]

    return run_id, {key(n): (n.operation, n.instruction, n.input, n.status, n.rule, n.response) for n in nodes}


def _requests_with_key(stub: StubServer, key: str) -> int:
    """Chat requests sent with `key`: each process below runs with its own key value, so the stub can tell
    whose a request was however late it arrives."""
    return sum(1 for r in stub.chat_requests() if r["headers"].get("authorization") == f"Bearer {key}")


class _GateAfterTwoChildren:
    """The scripted model, but from the 30th request on (of about 55 in the run: seeds and four or so children
    answered and scored) every reply waits until the test has killed the run: the run is stalled mid-way when it
    is killed, however fast or slow the machine. The test then waits until two children are in the store (the
    store's writer thread goes on while the replies are held)."""

    HOLD_FROM = 30

    def __init__(self, db: Path):
        self.db, self.killed, self.blocked = db, threading.Event(), threading.Event()
        self._lock, self._seen = threading.Lock(), 0

    def __call__(self, messages, purpose):
        with self._lock:
            self._seen += 1
            hold = self._seen >= self.HOLD_FROM
        if hold and not self.killed.is_set():
            self.blocked.set()
            self.killed.wait(120)
        return scripted_reply(messages, purpose)


def test_a_run_killed_with_sigkill_resumes_to_the_same_nodes_without_repeating_calls(env, tmp_path):
    seeds_file = tmp_path / "three.txt"
    seeds_file.write_text("\n".join(SEED_LINES[:3]) + "\n", encoding="utf-8")
    concurrency = 2
    args = ["--rounds", 3, "--concurrency", concurrency, "--seed", 9]
    killed_db, ref_db = tmp_path / "killed.db", tmp_path / "ref.db"
    keys = {"killed": "sk-stub-killed", "resumed": "sk-stub-resumed", "ref": "sk-stub-ref"}
    gate = _GateAfterTwoChildren(killed_db)
    with StubServer(handler=gate) as stub:
        cmd = [sys.executable, "-m", "evolab", "run", str(seeds_file), "--db", str(killed_db),
               *map(str, stub_args(stub) + args)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, STUB_KEY_ENV: keys["killed"]},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert gate.blocked.wait(120), "the run never got to its 30th request"
            deadline = time.monotonic() + 120
            while _child_nodes(killed_db) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a condition: the writer stores the steps whose replies came back
            assert _child_nodes(killed_db) >= 2, "the run never stored two children"
            assert proc.poll() is None, "the run finished before it could be killed"
            proc.kill()  # SIGKILL: no cleanup, no final status
        finally:
            proc.wait(timeout=30)
            gate.killed.set()  # from here on every request is answered at once
        assert proc.returncode == -9

        store = Store(killed_db)
        try:
            run_id = store.latest_run_id()
            assert store.get_run(run_id)["status"] == "running"  # killed mid-run
            children_at_kill = len([n for n in store.nodes(run_id) if n.round])
            assert 2 <= children_at_kill < 9
            done_before = {c.request_hash for c in store.calls(run_id) if c.error is None and not c.cached}
            rows_before = len(store.calls(run_id))
            stored_before = sum(1 for c in store.calls(run_id) if not c.cached)
        finally:
            store.close()

        # --take-over: the killed process is gone (checked above), so its run lease need not expire first
        # (tests/test_lease.py: without it, exit 2 naming the holder; `resume --wait` takes it once it expired)
        r = cli({**env, STUB_KEY_ENV: keys["resumed"]}, "resume", "--db", killed_db, "--take-over")
        assert r.returncode == 0, r.stderr
        resumed_requests = _requests_with_key(stub, keys["resumed"])

        r = cli({**env, STUB_KEY_ENV: keys["ref"]}, "run", seeds_file, "--db", ref_db, *stub_args(stub), *args)
        assert r.returncode == 0, r.stderr
        ref_total = _requests_with_key(stub, keys["ref"])
        killed_requests = _requests_with_key(stub, keys["killed"])
        killed_total = killed_requests + resumed_requests

    killed, ref = Store(killed_db), Store(ref_db)
    try:
        run_id, got = _canonical(killed)
        _, want = _canonical(ref)
        assert got == want  # same nodes: ids (by seed and slot), instructions, statuses, answers
        assert killed.get_run(run_id)["status"] == "finished"
        new_rows = killed.calls(run_id)[rows_before:]
        assert not [c for c in new_rows if c.request_hash in done_before and not c.cached]  # none sent again
        assert resumed_requests == sum(1 for c in new_rows if not c.cached)
        # What is paid twice is at most what the killed run had sent but not stored: the calls in flight at the kill
        # and any answered in the writer's queue (DESIGN: a crash loses only the queue's tail; the endpoint's
        # structured-output probe is remembered, not stored as a call), never a stored one (checked above).
        sent_not_stored = killed_requests - stored_before
        assert ref_total <= killed_total <= ref_total + sent_not_stored
    finally:
        killed.close()
        ref.close()


def test_judge_compares_two_rounds_and_two_runs_with_swapped_answers(stub, env, seeds_file, tmp_path):
    db = str(tmp_path / "judge.db")
    for seed in ("1", "2"):
        assert cli(env, "run", seeds_file, "--db", db, "--rounds", "2", "--seed", seed, *stub_args(stub)).returncode == 0
    run_b, run_a = [r["id"] for r in Store(db).list_runs()]  # newest first
    before = stub.count("judge")

    out = cli(env, "judge", "--db", db, "--run", run_a, "--rounds", "0,2")
    assert out.returncode == 0, out.stderr
    pairs = int(re.search(r"(\d+) pairs judged twice", out.stdout).group(1))
    assert pairs > 0 and stub.count("judge") - before == 2 * pairs  # each pair asked twice, swapped
    counts = {k: int(re.search(rf"A {k}\s+(\d+)", out.stdout).group(1)) for k in ("win", "tie", "lose", "unknown")}
    assert sum(counts.values()) == pairs
    assert len(Store(db).judgments()) == pairs  # stored

    out = cli(env, "judge", "--db", db, "--run", run_a, "--against", run_b)
    assert out.returncode == 0, out.stderr
    assert "pairs judged twice" in out.stdout

    bad = cli(env, "judge", "--db", db, "--run", run_a)
    assert bad.returncode == 2 and "--rounds" in bad.stderr
