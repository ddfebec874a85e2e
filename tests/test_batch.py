"""Batch mode (evolab/batch.py) against the stub's files and batches API: the same tree as online, resume
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

from evolab import batch, pipeline
from evolab.llm.fake import scripted_reply
from evolab.llm.pricing import resolve_price
from evolab.llm.stub_server import StubServer
from evolab.schema import RunConfig, Seed
from evolab.store import Store

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
        online, batched = Store(tmp_path / "online.db"), Store(tmp_path / "batch.db")
        make_run(online, stub, fanout=fanout, random_seed=7)
        make_run(batched, stub, fanout=fanout, random_seed=7)
        assert pipeline.run_sync(online, "run-a") == "finished"
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
