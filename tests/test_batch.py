"""Batch mode (evolab/engine/batch.py) against the stub's files and batches API: the same tree as online, resume
after SIGKILL without a second job, expired jobs and failed lines sent again, cancel, export/import."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evolab.engine import batch, pipeline
from evolab.llm.fake import scripted_reply
from evolab.llm.pricing import resolve_price
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [
    Seed("Explain why the sky is blue."),
    Seed("Write a short poem about the sea."),
    Seed("Summarise the text in one sentence.", input="The meeting moved to Tuesday because the room was booked."),
    Seed("하늘이 왜 파란지 설명하세요."),
    Seed("새로운 언어를 배우는 세 가지 팁을 알려 주세요."),
]
FAST = batch.BatchOptions(poll=batch.PollPolicy(first_s=0.01, max_s=0.05))


def varied_reply(messages, purpose):
    """The scripted model, with some refusals and some Equal verdicts, so statuses and rules vary."""
    text = messages[-1]["content"]
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
    if purpose == "respond" and h % 5 == 0:
        return "죄송하지만 그 요청은 도와드릴 수 없습니다." if any("\uac00" <= c <= "\ud7a3" for c in text) \
            else "I'm sorry, but I can't help with that request."
    if purpose == "equal" and h % 6 == 0:
        return "Equal"
    return scripted_reply(messages, purpose)


def make_run(store, stub, run_id="run-a", **cfg) -> str:
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, **{"rounds": 2, "concurrency": 4, **cfg})
    return store.create_run(config, list(SEEDS), run_id=run_id)


def online_and_batched(tmp_path, stub, **cfg) -> tuple[Store, Store]:
    """The same run in two stores: run online in the first (the reference), not started in the second."""
    online, batched = Store(tmp_path / "online.db"), Store(tmp_path / "batch.db")
    make_run(online, stub, **cfg)
    make_run(batched, stub, **cfg)
    assert pipeline.run_sync(online, "run-a") == "finished"
    return online, batched


def tree(store, run_id):
    nodes = {n.id: (n.parent_id, n.round, n.operation, n.status, n.rule, n.instruction, n.response)
             for n in store.nodes(run_id)}
    scores = sorted((s.node_id, s.metric, s.value, s.judge) for s in store.scores(run_id))
    return nodes, scores


def calls(store, run_id):
    """Each call's request and node. Not whether it was a cache hit: two siblings that ask the very same judge
    question are both sent online when they are in flight together, once by batch (the other hits the cache)."""
    return sorted((c.purpose, c.node_id or "", c.request_hash or "", c.error is None)
                  for c in store.calls(run_id) if c.purpose != "probe")


@pytest.mark.parametrize("fanout", [1, 2])
def test_batch_run_makes_the_same_tree_as_online(tmp_path, fanout):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, fanout=fanout, random_seed=7)
        chat_before = stub.count()
        assert batch.run_batched(batched, "run-a", options=FAST) == "finished"
        assert stub.count() - chat_before <= 2  # the structured-output probe only: every answer came by batch
        assert tree(batched, "run-a") == tree(online, "run-a")
        nodes = batched.nodes("run-a")
        assert {n.status for n in nodes} >= {"seed", "kept", "eliminated"}
        assert any(n.language == "ko" and n.round == 2 for n in nodes)
        # The same calls, each once; batch ones flagged and billed at half the online price.
        assert calls(batched, "run-a") == calls(online, "run-a")
        sent = [c for c in batched.calls("run-a") if c.purpose != "probe" and not c.cached]
        assert batched.batch_call_count("run-a") == len(sent) > 0
        assert len(sent) <= len([c for c in online.calls("run-a") if c.purpose != "probe" and not c.cached])
        online_price = resolve_price("gpt-4o-mini")
        for c in sent:
            assert c.cost_usd == pytest.approx(online_price.cost(c.prompt_tokens, c.completion_tokens) / 2)
        jobs = batched.batches("run-a")
        assert all(j["status"] == "completed" and j["imported"] for j in jobs)
        # One job per call of the longest chain per round (evolve, respond, equal, scores), the seeds' calls ride along.
        assert len(jobs) == 2 * batch.jobs_per_round(batched.get_run("run-a")["config"])
        # Resuming a finished batch run sends nothing.
        created = stub.batches_created()
        assert batch.run_batched(batched, "run-a", options=FAST) == "finished"
        assert stub.batches_created() == created


def test_the_novelty_check_waits_for_the_other_lineages_as_online(tmp_path):
    """--dedup compares a child of round r with the other lineages' round r - 1: in batch mode a step waits
    for them (their calls in jobs) and the tree is still the online one."""
    from evolab.schema import RuleConfig

    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, fanout=2, random_seed=5, rules=RuleConfig(duplicate=True))
        chat_before = stub.count()
        assert batch.run_batched(batched, "run-a", options=FAST) == "finished"
        assert stub.count() - chat_before <= 2
        assert tree(batched, "run-a") == tree(online, "run-a")
        assert any(s.metric == "rule:duplicate" for s in batched.scores("run-a"))
        # No job went out before every step was waiting: still a round's chain of jobs per round.
        assert len(batched.batches("run-a")) == 2 * batch.jobs_per_round(batched.get_run("run-a")["config"])


def test_adaptive_operations_in_batch_mode(tmp_path):
    """--ops adaptive: a child's reward waits for its seed's difficulty, which comes in a job; the run finishes
    with a decision and a reward for every step, and no call went online."""
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, operation_sampling="adaptive")
        chat_before = stub.count()
        assert batch.run_batched(store, "run-a", options=FAST) == "finished"
        assert stub.count() - chat_before <= 2
        children = [n for n in store.nodes("run-a") if n.round > 0]
        assert len(children) == 2 * len(SEEDS)
        decisions = {d["node_id"]: d for d in store.op_decisions("run-a")}
        assert set(decisions) == {n.id for n in children}
        assert all(decisions[n.id]["operation"] == n.operation for n in children)
        assert any(d["reward"] is not None for d in decisions.values())


def test_a_stop_while_steps_wait_for_a_job_then_resume(tmp_path):
    """Stop (the app's button) while a job is in progress: the run stops, the job goes on; resume polls it
    and the tree is the online one."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, random_seed=9)
        stub.batch_timing = {"validating": 0.01, "per_line": 0.05, "finalizing": 0.01}
        stop = threading.Event()
        result: dict[str, str] = {}
        worker = threading.Thread(target=lambda: result.setdefault(
            "status", batch.run_batched(batched, "run-a", options=FAST, stop_event=stop)))
        worker.start()
        deadline = time.monotonic() + 180
        while len(batched.batches("run-a")) < 2:  # the second stage's job: steps are waiting mid-way
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.02)
        stop.set()
        worker.join(timeout=60)
        assert result["status"] == "stopped"
        assert batched.get_run("run-a")["status"] == "stopped"
        created = stub.batches_created()
        stub.batch_timing = {"validating": 0.01, "per_line": 0.0, "finalizing": 0.01}
        assert batch.run_batched(batched, "run-a", options=FAST) == "finished"
        jobs = batched.batches("run-a")
        assert len({j["provider_batch_id"] for j in jobs}) == len(jobs) == stub.batches_created()
        assert stub.batches_created() >= created
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_split_jobs_keeps_each_job_under_the_limits():
    reqs = [batch.BatchRequest(f"k{i}", "respond", None, {"model": "m", "messages": [
        {"role": "user", "content": "x" * (3000 if i == 4 else 50)}]}) for i in range(9)]
    jobs = batch.split_jobs(reqs, max_requests=3, max_bytes=1000)
    assert [r.key for lines, _ in jobs for r in lines] == [r.key for r in reqs]  # every request once, in order
    for lines, data in jobs:
        assert len(lines) <= 3 and len(data.splitlines()) == len(lines)
        assert len(data) <= 1000 or len(lines) == 1  # a line longer than the limit goes alone
        assert [json.loads(x)["custom_id"] for x in data.splitlines()] == [r.custom_id for r in lines]
    assert any(len(data) > 1000 for _, data in jobs)


def test_a_stage_larger_than_a_job_goes_out_as_several(tmp_path):
    """OpenAI takes at most 50,000 requests (200 MB) per job: a larger stage is split, and the tree is the same."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1)
        stub.batch_max_requests = 4  # the stub fails a larger job, as OpenAI does past 50,000
        opts = batch.BatchOptions(poll=FAST.poll, max_requests=4, max_bytes=6000)
        assert batch.run_batched(batched, "run-a", options=opts) == "finished"
        jobs = batched.batches("run-a")
        assert all(j["status"] == "completed" for j in jobs) and len(jobs) > batch.jobs_per_round(
            batched.get_run("run-a")["config"])
        assert all(j["n_requests"] <= 4 for j in jobs)
        sizes = [stub.files[j["input_file_id"]]["bytes"] for j in jobs]
        assert all(size <= 6000 or j["n_requests"] == 1 for size, j in zip(sizes, jobs))
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_cli_job_limits(tmp_path):
    """--batch-max-requests / --batch-max-mb from the CLI: jobs stay under them; a bad value is refused before a
    run exists."""
    from conftest import STUB_KEY_ENV

    db = tmp_path / "limits.db"
    with StubServer(handler=varied_reply) as stub:
        stub.batch_max_requests = 3
        base = [sys.executable, "-m", "evolab", "run", str(seeds_file(tmp_path)), "--db", str(db), "--rounds", "1",
                "--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV, "--batch",
                "--batch-poll", "0.02", "--batch-poll-max", "0.05"]
        bad = subprocess.run(base + ["--batch-max-requests", "0"], cwd=ROOT, env=cli_env(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "--batch-max-requests must be at least 1" in bad.stderr
        assert not db.exists() or Store(db).list_runs() == []
        r = subprocess.run(base + ["--batch-max-requests", "3", "--batch-max-mb", "0.004"], cwd=ROOT,
                           env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        store = Store(db)
        (run,) = store.list_runs()
        jobs = store.batches(run["id"])
        assert run["status"] == "finished" and all(j["status"] == "completed" for j in jobs)
        assert all(j["n_requests"] <= 3 for j in jobs)
        assert all(stub.files[j["input_file_id"]]["bytes"] <= 4000 or j["n_requests"] == 1 for j in jobs)


def test_a_full_provider_queue_sends_smaller_jobs_later(tmp_path):
    """A job refused for the provider's enqueued-token limit (OpenAI's token_limit_exceeded) is not the lines'
    fault: they go again in smaller jobs, one at a time, and no step fails."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1)
        stub.batch_enqueued_limit = 1500  # tokens: a few requests, not a whole stage
        logs: list[str] = []
        assert batch.run_batched(batched, "run-a", options=FAST, log=logs.append) == "finished"
        jobs = batched.batches("run-a")
        refused = [j for j in jobs if j["status"] == "failed"]
        assert refused and all("token_limit_exceeded" in j["error"] for j in refused)
        assert any("queue is full" in line for line in logs)
        assert batched.batch_line_failures("run-a") == {}  # no line counted as failed
        assert jobs[-1]["n_requests"] < refused[0]["n_requests"]
        assert tree(batched, "run-a") == tree(online, "run-a")


# -- the CLI: SIGKILL while a job is in progress -----------------------------------------------------------
def cli_env(tmp_path):
    env = dict(os.environ)
    env["EVOLAB_HOME"] = str(tmp_path / "home")
    env["EVOLAB_WARM"] = "0"
    env.pop("EVOLAB_DEBUG", None)
    env.pop("EVOLAB_DB", None)
    return env


def seeds_file(tmp_path) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"instruction": s.instruction, "input": s.input}, ensure_ascii=False) + "\n"
                            for s in SEEDS), encoding="utf-8")
    return path


def open_jobs(db: Path) -> list[tuple]:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT provider_batch_id, status FROM batches WHERE imported=0").fetchall()
    except sqlite3.OperationalError:  # the store is not created yet
        return []


def test_sigkill_while_a_job_runs_resumes_by_polling_it(tmp_path):
    from conftest import STUB_KEY_ENV

    db = tmp_path / "kill.db"
    with StubServer(handler=varied_reply) as stub:
        stub.batch_timing = {"validating": 0.05, "per_line": 0.3, "finalizing": 0.05}  # a job takes seconds
        args = [sys.executable, "-m", "evolab", "run", seeds_file(tmp_path), "--db", db, "--rounds", 1,
                "--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV,
                "--batch", "--batch-poll", "0.05", "--batch-poll-max", "0.1"]
        proc = subprocess.Popen([str(a) for a in args], cwd=ROOT, env=cli_env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 180
            while not any(status == "in_progress" for _, status in open_jobs(db)):
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "no job in progress within 180 s"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        killed = open_jobs(db)
        assert len(killed) == 1 and stub.batches_created() == 1
        stub.batch_timing = {"validating": 0.01, "per_line": 0.0, "finalizing": 0.01}
        # --take-over: the killed process is gone (checked above), so its run lease need not expire first
        r = subprocess.run([sys.executable, "-m", "evolab", "resume", "--db", str(db), "--take-over", "--batch",
                            "--batch-poll", "0.05", "--batch-poll-max", "0.1"], cwd=ROOT, env=cli_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"polling job {killed[0][0]} submitted earlier" in r.stderr
        store = Store(db)
        jobs = store.batches(store.latest_run_id())
        ids = [j["provider_batch_id"] for j in jobs]
        # The killed job was polled, never created again; each job on the stub was created exactly once.
        assert ids[0] == killed[0][0] and len(set(ids)) == len(ids) == stub.batches_created()
        assert store.get_run(store.latest_run_id())["status"] == "finished"
        assert all(n.status in ("seed", "kept", "eliminated") for n in store.nodes(store.latest_run_id()))


# -- expired jobs, failed lines, fallback online -------------------------------------------------------
def test_an_expired_job_sends_the_missing_lines_again(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1)
        stub.batch_outcomes.append("expired")
        stub.batch_expire_after = 3  # the first job answers 3 of its 10 lines before its window ends
        assert batch.run_batched(batched, "run-a", options=FAST) == "finished"
        first, second = batched.batches("run-a")[:2]
        assert first["status"] == "expired" and first["n_completed"] == 3 and first["n_failed"] == 7
        # The 7 lines it did not answer go in the next job (beside the next stage of the 3 it answered).
        first_keys = set(batched.batch_line_hashes(first["id"]).values())
        second_keys = set(batched.batch_line_hashes(second["id"]).values())
        assert len(first_keys & second_keys) == 7 and second["n_requests"] > 7
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_failed_lines_are_resubmitted_then_the_step_fails(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1)
        seen: dict[str, int] = {}
        respond_ids: list[str] = []

        def flaky(line):
            cid = line["custom_id"]
            if not cid.startswith("respond:"):
                return None
            if cid not in respond_ids:
                respond_ids.append(cid)
            seen[cid] = seen.get(cid, 0) + 1
            if cid == respond_ids[0]:
                return 500  # never answered
            if cid == respond_ids[1] and seen[cid] == 1:
                return 503  # answered on the second job
            return None

        stub.batch_line_fault = flaky
        opts = batch.BatchOptions(poll=FAST.poll, max_attempts=2)
        assert batch.run_batched(batched, "run-a", options=opts) == "finished"
        assert seen[respond_ids[0]] == 2 and seen[respond_ids[1]] == 2
        key = respond_ids[0].split(":", 1)[1]
        failed_calls = [c for c in batched.calls("run-a") if c.request_hash == key]
        assert len(failed_calls) == 1 and "HTTP 500" in failed_calls[0].error
        failed_node = batched.get_node(failed_calls[0].node_id)
        if failed_node.round == 0:  # a seed's answer failed: the seed stays, without an answer
            assert failed_node.response is None and "seed answer failed" in failed_node.detail
        else:
            assert failed_node.status == "failed" and failed_node.rule == "llm_error"
        # Everything else is as online.
        on_nodes, _ = tree(online, "run-a")
        b_nodes, _ = tree(batched, "run-a")
        assert {k: v for k, v in b_nodes.items() if k != failed_node.id} == \
            {k: v for k, v in on_nodes.items() if k != failed_node.id}


def test_failed_lines_can_go_online(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1)
        stub.batch_line_fault = lambda line: 500 if line["custom_id"].startswith("evolve:") else None
        before = stub.count("evolve")
        opts = batch.BatchOptions(poll=FAST.poll, fallback="online")
        assert batch.run_batched(batched, "run-a", options=opts) == "finished"
        assert stub.count("evolve") - before == len(SEEDS)  # each failed evolve line, once, online
        assert tree(batched, "run-a") == tree(online, "run-a")
        evolve_calls = [c for c in batched.calls("run-a") if c.purpose == "evolve"]
        price = resolve_price("gpt-4o-mini")
        assert all(c.cost_usd == pytest.approx(price.cost(c.prompt_tokens, c.completion_tokens)) for c in evolve_calls)


def test_a_result_download_that_fails_is_tried_again(tmp_path):
    """The files API answering 502 on a download (past the client's own retries) does not end the run."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1, max_retries=0)
        stub.file_content_failures = 2
        logs: list[str] = []
        assert batch.run_batched(batched, "run-a", options=FAST, log=logs.append) == "finished"
        assert stub.file_content_failures == 0 and sum("trying again" in line for line in logs) == 2
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_a_failed_job_is_resubmitted(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        stub.batch_outcomes.append("failed")
        assert batch.run_batched(store, "run-a", options=FAST) == "finished"
        jobs = store.batches("run-a")
        assert jobs[0]["status"] == "failed" and "injected" in jobs[0]["error"]
        assert jobs[1]["n_requests"] == jobs[0]["n_requests"]


# -- cancel ---------------------------------------------------------------------------------------------
def test_cancel_stops_the_run_and_keeps_the_answers(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        stub.batch_timing = {"validating": 0.01, "per_line": 0.1, "finalizing": 0.01}
        result: dict[str, str] = {}
        worker = threading.Thread(target=lambda: result.setdefault(
            "status", batch.run_batched(store, "run-a", options=FAST)))
        worker.start()
        deadline = time.monotonic() + 180
        while not any(j["status"] == "in_progress" and j["n_completed"] >= 2 for j in store.batches("run-a")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert len(batch.cancel_run_batches(Store(tmp_path / "b.db"), "run-a")) == 1
        worker.join(timeout=30)
        assert result["status"] == "stopped"
        job = store.batches("run-a")[0]
        assert job["status"] == "cancelled" and job["imported"]
        assert 2 <= store.batch_call_count("run-a") < job["n_requests"]
        assert "cancelled" in store.get_run("run-a")["error"]
        # Resuming sends only the rest and finishes.
        stub.batch_timing = {"validating": 0.01, "per_line": 0.0, "finalizing": 0.01}
        assert batch.run_batched(store, "run-a", options=FAST) == "finished"
        first, second = store.batches("run-a")[:2]
        answered = {c.request_hash for c in store.calls("run-a") if c.purpose != "probe"}
        first_keys = set(store.batch_line_hashes(first["id"]).values())
        second_keys = set(store.batch_line_hashes(second["id"]).values())
        kept = {c.request_hash for c in store.calls("run-a") if c.created_at <= first["updated_at"]}
        assert first_keys - kept <= second_keys and not (first_keys & kept & second_keys)
        assert first_keys <= answered


# -- export / import (vLLM run-batch or any service) ----------------------------------------------------
def run_lines_like_vllm(stub, requests_path: Path, results_path: Path) -> None:
    """What `vllm run-batch` does with the file: answer every line, write OpenAI's output format."""
    out = []
    for raw in requests_path.read_text(encoding="utf-8").splitlines():
        line = json.loads(raw)
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        status, body = stub.chat_completion(line["body"], line["custom_id"].split(":", 1)[0])
        out.append({"id": f"vllm-{len(out)}", "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": f"vllm-batch-{len(out)}", "body": body},
                    "error": None})
    results_path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in out), encoding="utf-8")


def test_export_import_round_trip_gives_the_same_tree(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, random_seed=3)
        chat_before = stub.count()
        for stage in range(1, 20):
            requests_path, results_path = tmp_path / f"req{stage}.jsonl", tmp_path / f"out{stage}.jsonl"
            n = batch.export_requests(batched, "run-a", requests_path)
            if n == 0:
                break
            assert batched.get_run("run-a")["status"] == "paused"
            run_lines_like_vllm(stub, requests_path, results_path)
            summary = batch.import_results_file(batched, "run-a", results_path)
            assert summary["answered"] == n and summary["failed"] == 0 and summary["unknown"] == 0
        assert batched.get_run("run-a")["status"] == "finished"
        assert stub.count() - chat_before <= 2  # the probe only
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_import_of_a_foreign_or_broken_file_says_so(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        batch.export_requests(store, "run-a", tmp_path / "req.jsonl")
        (tmp_path / "other.jsonl").write_text(json.dumps({"custom_id": "evolve:nope", "response": {
            "status_code": 200, "body": {"choices": [{"message": {"content": "x"}}]}}, "error": None}) + "\n")
        summary = batch.import_results_file(store, "run-a", tmp_path / "other.jsonl")
        assert summary["unknown"] == 1 and summary["answered"] == 0 and summary["pending"] > 0
        (tmp_path / "broken.jsonl").write_text("not json\n")
        with pytest.raises(batch.BatchError, match="Line 1"):
            batch.import_results_file(store, "run-a", tmp_path / "broken.jsonl")
        with pytest.raises(batch.BatchError, match="Cannot read"):
            batch.import_results_file(store, "run-a", tmp_path / "missing.jsonl")


def test_batch_lines_are_the_online_request_bodies(tmp_path):
    """The batch JSONL carries OpenAI's line format with the body the online backend posts (Korean kept as is)."""
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        batch.export_requests(store, "run-a", tmp_path / "req.jsonl")
        raw = (tmp_path / "req.jsonl").read_text(encoding="utf-8")
        lines = [json.loads(x) for x in raw.splitlines()]
        assert "하늘이 왜 파란지" in raw  # not \\u-escaped
        assert {tuple(sorted(x)) for x in lines} == {("body", "custom_id", "method", "url")}
        assert len({x["custom_id"] for x in lines}) == len(lines)
        evolve = [x for x in lines if x["custom_id"].startswith("evolve:")]
        assert len(evolve) == len(SEEDS)
        assert all(set(x["body"]) == {"model", "messages", "max_tokens", "temperature"} for x in evolve)
        assert STUB_SECRET not in raw


STUB_SECRET = "sk-stub-test-key"


def test_cli_export_import_loop_like_a_gpu_machine(tmp_path):
    """run --batch-export, then batch import / batch export until the run needs nothing more, as the README says."""
    from conftest import STUB_KEY_ENV

    db, req, out = tmp_path / "cli.db", tmp_path / "requests.jsonl", tmp_path / "results.jsonl"

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "evolab", *map(str, args)], cwd=ROOT, env=cli_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    with StubServer(handler=varied_reply) as stub:
        text = cli("run", seeds_file(tmp_path), "--db", db, "--rounds", 1, "--base-url", stub.base_url, "--model",
                   "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV, "--batch-export", req)
        assert f"requests -> {req}" in text and "run_batch -i" in text and "--model gpt-4o-mini" in text
        chat_before = stub.count()
        for _ in range(10):
            run_lines_like_vllm(stub, req, out)
            text = cli("batch", "import", "--db", db, "--results", out)
            assert "answers imported, 0 failed lines, 0 lines not asked for" in text
            if "is finished" in text:
                break
            assert "batch export" in text
            cli("batch", "export", "--db", db, "--out", req)
        assert "is finished" in text
        assert stub.count() == chat_before  # nothing was sent online after the probe
        status = cli("batch", "status", "--db", db)
        assert "calls answered by batch" in status and "completed" in status


def test_a_reasoning_models_parameters_are_learned_from_line_errors(tmp_path):
    """Lines refused like OpenAI refuses max_tokens / temperature for o-series models teach the quirks; the
    lines are sent again with max_completion_tokens and no temperature, and the run finishes."""
    with StubServer(handler=varied_reply, reasoning_models=("o3-custom",)) as stub:
        store = Store(tmp_path / "r.db")
        config = RunConfig(model="o3-custom", base_url=stub.base_url, rounds=1)
        run_id = store.create_run(config, list(SEEDS[:2]), run_id="run-r")
        assert batch.run_batched(store, run_id, options=FAST) == "finished"
        assert {n.status for n in store.nodes(run_id)} <= {"seed", "kept", "eliminated"}
        last = [l for l in stub.batches.values()][-1]
        body = json.loads(stub.files[last["input_file_id"]]["data"].decode().splitlines()[0])["body"]
        assert "max_completion_tokens" in body and "max_tokens" not in body and "temperature" not in body


def test_the_budget_stops_a_batch_run(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=2, budget_usd=0.001)
        assert batch.run_batched(store, "run-a", options=FAST) == "budget"
        assert store.run_cost("run-a") <= 0.001
        assert store.batch_call_count("run-a") > 0
        assert len(store.nodes("run-a")) < len(SEEDS) * 3  # it stopped before the last steps


def test_the_estimate_shows_the_batch_price(tmp_path):
    from evolab.engine.estimate import estimate_run, format_estimate

    est = estimate_run(list(SEEDS), RunConfig(model="gpt-4o-mini", rounds=2))
    for case in ("low", "expected", "high"):
        assert est[case]["cost_usd_batch"] == pytest.approx(est[case]["cost_usd"] / 2)
    assert "half of online" in format_estimate(est)
    unknown = estimate_run(list(SEEDS), RunConfig(model="my-private-model", rounds=2))
    assert unknown["expected"]["cost_usd_batch"] is None and "unknown" in format_estimate(unknown)
    given = estimate_run(list(SEEDS), RunConfig(model="my-private-model", rounds=2, price=(1.0, 2.0)))
    assert given["expected"]["cost_usd_batch"] == pytest.approx(given["expected"]["cost_usd"])  # as you gave it
