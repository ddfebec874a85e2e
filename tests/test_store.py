"""The SQLite store: WAL, migrations, several writers, round trips, atomic steps, summaries."""
from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import evolab.store as store_module
from evolab.schema import LLMCall, Node, RuleConfig, RunConfig, Score, Seed
from evolab.store import SCHEMA_VERSION, Store, text_hash

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"meta", "runs", "nodes", "calls", "scores", "embeddings", "cache", "seed_sets", "judgments"}


def make_node(run_id: str, i: int = 0, **kw) -> Node:
    fields = dict(id=f"{run_id}-n{i}", run_id=run_id, parent_id=None, root_id=f"{run_id}-n{i}", round=0,
                  operation="seed", instruction=f"Instruction {i}", status="seed")
    fields.update(kw)
    return Node(**fields)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")
                if not r[0].startswith("sqlite_")}


# -- opening -------------------------------------------------------------------------------------------
def test_wal_mode_is_on(store, tmp_path):
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    # WAL is a property of the file: another connection sees it too.
    with sqlite3.connect(tmp_path / "evolab.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_empty_file_gets_the_schema_and_reopening_keeps_data(tmp_path):
    path = tmp_path / "sub" / "empty.db"
    path.parent.mkdir()
    path.touch()  # an existing, empty file
    s = Store(path)
    assert s.schema_version == SCHEMA_VERSION
    assert tables(path) >= TABLES
    run_id = s.create_run(RunConfig(), [Seed("Hello")])
    s.close()

    s = Store(path)  # migrations are not applied twice
    assert s.schema_version == SCHEMA_VERSION
    assert [r["id"] for r in s.list_runs()] == [run_id]
    s.close()


def test_a_new_migration_applies_on_open(tmp_path, monkeypatch):
    path = tmp_path / "evolab.db"
    s = Store(path)
    run_id = s.create_run(RunConfig(), [])
    s.save_node(make_node(run_id))
    s.close()

    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS + [
        "ALTER TABLE nodes ADD COLUMN tag TEXT; CREATE TABLE extra (x INTEGER)"])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    s = Store(path)
    assert s.schema_version == SCHEMA_VERSION + 1
    assert "extra" in tables(path)
    assert "tag" in [r[1] for r in s.query("PRAGMA table_info(nodes)")]
    assert s.get_node(f"{run_id}-n0").instruction == "Instruction 0"  # data kept
    s.close()


def test_a_store_from_a_newer_schema_is_refused_clearly(tmp_path):
    path = tmp_path / "evolab.db"
    Store(path).close()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 5),))
    with pytest.raises(RuntimeError) as info:
        Store(path)
    message = str(info.value)
    assert "newer evolab" in message and str(SCHEMA_VERSION + 5) in message and "upgrade" in message
    assert str(path) in message
    with sqlite3.connect(path) as c:  # and it was left as it was
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION + 5)


# -- several writers -----------------------------------------------------------------------------------
def test_two_store_objects_on_one_file(tmp_path):
    path = tmp_path / "evolab.db"
    a, b = Store(path), Store(path)
    run_id = a.create_run(RunConfig(), [])
    a.save_node(make_node(run_id, 1))
    assert b.get_node(f"{run_id}-n1").instruction == "Instruction 1"
    b.save_node(make_node(run_id, 2))
    assert [n.id for n in a.nodes(run_id)] == [f"{run_id}-n1", f"{run_id}-n2"]

    # Both writing at the same time from threads.
    def write(s: Store, start: int) -> None:
        for i in range(start, start + 100):
            s.record_step(make_node(run_id, i), calls=[LLMCall(purpose="evolve", model="m", run_id=run_id)])
    threads = [threading.Thread(target=write, args=(a, 100)), threading.Thread(target=write, args=(b, 200))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(a.nodes(run_id)) == 202 and len(b.calls(run_id)) == 200
    a.close()
    b.close()


def test_a_second_process_writes_while_this_one_writes(tmp_path):
    path = tmp_path / "evolab.db"
    s = Store(path)
    run_id = s.create_run(RunConfig(), [])
    child_code = textwrap.dedent(f"""
        import sys
        from evolab.store import Store
        from evolab.schema import Node, LLMCall
        s = Store({str(path)!r})
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(150):
            node = Node(id=f"child-{{i}}", run_id={run_id!r}, parent_id=None, root_id=f"child-{{i}}", round=0,
                        operation="seed", instruction=f"From the child {{i}} 자식", status="seed")
            s.record_step(node, calls=[LLMCall(purpose="respond", model="m", run_id={run_id!r}, prompt_tokens=1)])
        s.close()
        print("done", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", child_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.stdin.write("go\n")
    child.stdin.flush()
    for i in range(150):  # at the same time as the child
        s.record_step(make_node(run_id, i), calls=[LLMCall(purpose="evolve", model="m", run_id=run_id)])
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "done"

    nodes = s.nodes(run_id)
    assert len(nodes) == 300
    assert sum(n.id.startswith("child-") for n in nodes) == 150
    assert s.get_node("child-7").instruction == "From the child 7 자식"
    assert s.run_summary(run_id)["calls"] == 300
    s.close()


# -- round trips ---------------------------------------------------------------------------------------
def test_node_round_trips_every_field(store):
    config = RunConfig(model="gpt-4o-mini", base_url="http://localhost:8000/v1", api_key_env="MY_KEY", rounds=3,
                       fanout=2, operation_weights={"deepen": 2.0, "breadth": 0.5}, language="ko",
                       budget_usd=1.25, rules=RuleConfig(duplicate=True, quality_min=4.0))
    seeds = [Seed("김치찌개 끓이는 법을 알려 주세요.", input="", skill="요리", difficulty=3.0, language="ko")]
    run_id = store.create_run(config, seeds, name="한국어 실행")
    run = store.get_run(run_id)
    assert run["config"] == config and run["seeds"] == seeds and run["name"] == "한국어 실행"
    assert run["status"] == "created"

    seed = make_node(run_id, 0, instruction=seeds[0].instruction, skill="요리", seed_difficulty=3.0, language="ko")
    child = Node(
        id="child-1", run_id=run_id, parent_id=seed.id, root_id=seed.id, round=1, operation="deepen",
        instruction="김치찌개를 끓이는 과정을 단계별로 설명하고, 각 단계의 이유를 밝히세요.",
        input="재료: 김치, 돼지고기, 두부", response="먼저 김치를 볶습니다. 🍲\n그다음 물을 붓습니다.",
        status="eliminated", rule="refusal", detail="짧은 거절 (12 words)", skill="요리", seed_difficulty=3.0,
        language="ko", template="deepen", template_version="v2", prompt="#Given Prompt#: ... #Rewritten Prompt#",
        raw_output="#Rewritten Prompt#:\n김치찌개를...", created_at=1700000000.123456,
    )
    store.record_step(seed)
    store.record_step(child)
    assert store.get_node("child-1") == child
    assert store.get_node(seed.id) == seed
    assert store.children(seed.id) == [child]
    assert store.nodes(run_id) == [seed, child]
    assert store.nodes(run_id, status="eliminated") == [child]
    assert store.get_node("missing") is None

    # An update replaces every field.
    child.status, child.rule, child.response = "kept", None, "새 답변"
    store.save_node(child)
    assert store.get_node("child-1") == child


def test_record_step_writes_node_scores_and_calls_together(store):
    run_id = store.create_run(RunConfig(), [])
    node = make_node(run_id)
    store.record_step(node, scores=[Score(node.id, "difficulty", 7.0, "gpt-4o-mini"),
                                    Score(node.id, "quality", None, "gpt-4o-mini", detail="unparsable")],
                      calls=[LLMCall(purpose="difficulty", model="gpt-4o-mini", run_id=run_id, node_id=node.id)])
    assert store.get_node(node.id) == node
    assert sorted((s.metric, s.value) for s in store.scores(node_id=node.id)) == [("difficulty", 7.0),
                                                                                   ("quality", None)]
    assert len(store.scores(run_id=run_id)) == 2
    assert [c.node_id for c in store.calls(run_id)] == [node.id]


def test_record_step_is_atomic(store):
    run_id = store.create_run(RunConfig(), [])
    node = make_node(run_id)
    bad_score = Score(node.id, "difficulty", {"not": "a number"}, "judge")  # sqlite cannot bind a dict
    with pytest.raises(sqlite3.Error):
        store.record_step(node, scores=[Score(node.id, "quality", 4.0, "judge"), bad_score],
                          calls=[LLMCall(purpose="evolve", model="m", run_id=run_id)])
    assert store.get_node(node.id) is None
    assert store.scores(node_id=node.id) == []
    assert store.calls(run_id) == []

    with pytest.raises(ZeroDivisionError):
        with store.transaction() as c:
            Store._upsert_node(c, node)
            Store._put_call(c, LLMCall(purpose="evolve", model="m", run_id=run_id))
            1 / 0
    assert store.get_node(node.id) is None and store.calls(run_id) == []

    # The store is still usable afterwards, and a second connection sees nothing half-written.
    store.record_step(node)
    assert store.get_node(node.id) == node
    other = Store(store.path)
    assert other.get_node(node.id) == node and other.calls(run_id) == []
    other.close()


def test_run_summary_counts(store):
    run_id = store.create_run(RunConfig(), [])
    other_run = store.create_run(RunConfig(), [])
    statuses = [("seed", None, 0), ("seed", None, 0), ("kept", None, 1), ("kept", None, 2),
                ("eliminated", "refusal", 1), ("eliminated", "prompt_leak", 2), ("eliminated", "refusal", 2),
                ("failed", "llm_error", 3)]
    for i, (status, rule, rnd) in enumerate(statuses):
        store.save_node(make_node(run_id, i, status=status, rule=rule, round=rnd))
    store.save_node(make_node(other_run, 0))
    calls = [LLMCall("evolve", "gpt-4o-mini", 100, 50, cost_usd=0.001, run_id=run_id, created_at=10.0),
             LLMCall("respond", "gpt-4o-mini", 200, 80, cost_usd=0.002, run_id=run_id, created_at=12.0),
             LLMCall("respond", "gpt-4o-mini", 200, 80, cost_usd=0.0, cached=True, run_id=run_id, created_at=13.0),
             LLMCall("evolve", "gpt-4o-mini", error="HTTP 500", run_id=run_id, created_at=11.0),
             LLMCall("evolve", "gpt-4o-mini", 999, 999, cost_usd=9.0, run_id=other_run)]
    for c in calls:
        store.add_call(c)

    s = store.run_summary(run_id)
    assert s["nodes"] == 8
    assert s["by_status"] == {"seed": 2, "kept": 2, "eliminated": 3, "failed": 1}
    assert s["by_rule"] == {"refusal": 2, "prompt_leak": 1, "llm_error": 1}
    assert (s["calls"], s["cached_calls"], s["failed_calls"]) == (4, 1, 1)
    assert (s["prompt_tokens"], s["completion_tokens"]) == (500, 210)
    assert s["cost_usd"] == pytest.approx(0.003)
    assert store.run_cost(run_id) == pytest.approx(0.003)
    assert s["price_known"] is True
    assert (s["first_call_at"], s["last_call_at"]) == (10.0, 13.0)
    assert s["max_round"] == 3

    empty = store.run_summary(store.create_run(RunConfig(), []))
    assert (empty["nodes"], empty["calls"], empty["cost_usd"], empty["max_round"]) == (0, 0, 0, 0)

    from evolab.analysis import warmup
    from evolab.audit import review

    kept = {warmup.META_PREFIX + run_id, review.KEPT_QUEUE_PREFIX + f"{other_run},{run_id}", f"ray|{run_id}"}
    others = {warmup.META_PREFIX + other_run, review.KEPT_QUEUE_PREFIX + other_run, f"ray|{run_id}x"}
    for key in kept | others:
        store.set_meta(key, "{}")
    store.delete_run(run_id)
    assert store.get_run(run_id) is None and store.nodes(run_id) == [] and store.calls(run_id) == []
    assert len(store.nodes(other_run)) == 1
    # the run's meta entries (the map's warm-up, a queue that held it, its Ray job) go with it; others stay
    assert [k for k in kept if store.get_meta(k) is not None] == []
    assert all(store.get_meta(k) == "{}" for k in others)


def test_seed_sets_save_and_load(store):
    first = [Seed("Write a poem about the sea."), Seed("서울의 역사를 요약하세요.", skill="역사", difficulty=4.0,
                                                      language="ko", input="삼국 시대부터")]
    store.save_seed_set("  mixed  ", first)
    assert store.seed_sets() == ["mixed"]
    assert store.load_seed_set("mixed") == first
    store.save_seed_set("mixed", first[:1])  # saving again replaces
    assert store.load_seed_set("mixed") == first[:1]
    store.save_seed_set("other", [])
    assert set(store.seed_sets()) == {"mixed", "other"}
    with pytest.raises(KeyError, match="nope"):
        store.load_seed_set("nope")
    with pytest.raises(ValueError):
        store.save_seed_set("   ", first)


def test_embeddings_put_and_get(store):
    def blob(i: int) -> bytes:
        return struct.pack("<4f", i, i + 0.5, -i, 0.25)
    texts = [f"sentence {i}" for i in range(1200)]  # more than one 500-row chunk
    store.put_embeddings("mini", [(text_hash(t), 4, blob(i)) for i, t in enumerate(texts)])
    store.put_embeddings("other-model", [(text_hash(texts[0]), 4, blob(99))])

    hashes = [text_hash(t) for t in texts] + [text_hash("never stored")]
    got = store.get_embeddings("mini", hashes)
    assert len(got) == 1200
    assert got[text_hash("sentence 7")] == blob(7)
    assert struct.unpack("<4f", got[text_hash("sentence 1199")]) == (1199.0, 1199.5, -1199.0, 0.25)
    assert store.get_embeddings("other-model", hashes) == {text_hash(texts[0]): blob(99)}
    assert store.get_embeddings("mini", []) == {}


def test_request_cache_round_trip(store):
    assert store.cache_get("k") is None
    store.cache_put("k", "gpt-4o-mini", {"text": "안녕하세요", "prompt_tokens": 3})
    assert store.cache_get("k") == {"text": "안녕하세요", "prompt_tokens": 3}
