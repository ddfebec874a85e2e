"""Runs on the stub server: the paper's round semantics, fan-out, operation weights, reproducibility and
the cache, lineages that do not wait for each other, one concurrency limit, storing as steps complete,
stop and resume, the budget, progress, the responder, Korean seeds, every rule, a 429/500 storm."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter

import pytest
from conftest import AllInFlight, openai_backend_for

from evolab.engine import pipeline
from evolab.engine.operations import load_template, operation_names
from evolab.engine.responder import response_prompt
from evolab.llm import scripted_reply
from evolab.llm.fake import given_prompt
from evolab.schema import RuleConfig, RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

SEEDS = [
    Seed("Explain why the sky is blue."),
    Seed("Write a short poem about the sea."),
    Seed("Summarise the text in one sentence.", input="The meeting moved to Tuesday because the room was booked."),
    Seed("Give three tips for learning a new language."),
    Seed("Describe how a bicycle gear system works."),
]


def make_run(store, stub, seeds=SEEDS, **cfg) -> str:
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, **{"rounds": 2, "concurrency": 4, **cfg})
    return pipeline.create_run(store, list(seeds), config)


def run(store, stub, run_id, *, backend=None, **kw) -> str:
    return pipeline.run_sync(store, run_id, backend=backend or openai_backend_for(stub), **kw)


def canonical(store, run_id) -> dict:
    """The tree with run-independent keys (seed index, then (round, slot) steps), so two runs compare."""
    run_ = store.get_run(run_id)
    fanout, nodes = run_["config"].fanout, store.nodes(run_id)
    by_id = {n.id: n for n in nodes}
    keys: dict[str, tuple] = {pipeline.seed_id(run_id, i): (i,) for i in range(len(run_["seeds"]))}

    def key(n):
        if n.id not in keys:
            slot = next(s for s in range(fanout) if pipeline.child_id(run_id, n.parent_id, n.round, s) == n.id)
            keys[n.id] = key(by_id[n.parent_id]) + ((n.round, slot),)
        return keys[n.id]

    return {key(n): (n.operation, n.instruction, n.input, n.status, n.rule, n.response, n.template) for n in nodes}


def check_paper_semantics(nodes, rounds: int, fanout: int) -> None:
    """Round r evolves every pool node K times; kept children join the pool; a node whose K children were
    all eliminated (or failed) stays in the pool."""
    pool = {n.id for n in nodes if n.round == 0}
    for r in range(1, rounds + 1):
        kids = [n for n in nodes if n.round == r]
        per_parent = Counter(k.parent_id for k in kids)
        assert set(per_parent) == pool, f"round {r}"
        assert set(per_parent.values()) == {fanout}, f"round {r}"
        nxt = set()
        for p in pool:
            kept = {k.id for k in kids if k.parent_id == p and k.status == "kept"}
            nxt |= kept or {p}
        pool = nxt


def check_lineage(nodes) -> None:
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        if n.round == 0:
            assert n.parent_id is None and n.root_id == n.id and n.status == "seed" and n.operation == "seed"
            continue
        parent = by_id[n.parent_id]  # every parent exists
        assert parent.round < n.round  # rounds increase along every path
        assert n.root_id == parent.root_id and by_id[n.root_id].round == 0
        assert n.operation in operation_names()
        assert n.status in ("kept", "eliminated", "failed")


# -- rounds and fan-out ----------------------------------------------------------------------------------
def test_rounds_follow_the_papers_semantics(stub, store):
    run_id = make_run(store, stub, rounds=3)
    assert run(store, stub, run_id) == "finished"
    nodes = store.nodes(run_id)
    check_lineage(nodes)
    check_paper_semantics(nodes, 3, 1)
    assert Counter(n.round for n in nodes) == {0: 5, 1: 5, 2: 5, 3: 5}
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        if n.round:
            assert n.status == "kept" and by_id[n.parent_id].round == n.round - 1
            assert n.instruction.startswith(by_id[n.parent_id].instruction)  # the stub appends a clause
    assert store.get_run(run_id)["status"] == "finished"


def test_fanout_k_children_per_pool_node_per_round(stub, store):
    run_id = make_run(store, stub, seeds=SEEDS[:2], rounds=2, fanout=3)
    run(store, stub, run_id)
    nodes = store.nodes(run_id)
    check_lineage(nodes)
    check_paper_semantics(nodes, 2, 3)
    assert Counter(n.round for n in nodes) == {0: 2, 1: 6, 2: 18}


def test_fanout_with_eliminations_keeps_the_parent_when_all_children_fail(stub, store):
    def handler(messages, purpose):
        if purpose == "evolve" and "brand-new" in messages[-1]["content"]:  # breadth: echo the parent
            return "#Rewritten Prompt#:\n" + given_prompt(messages)
        return scripted_reply(messages, purpose)

    stub.handler = handler
    run_id = make_run(store, stub, rounds=3, fanout=2, operation_weights={"breadth": 1.0, "deepen": 1.0})
    run(store, stub, run_id)
    nodes = store.nodes(run_id)
    check_lineage(nodes)
    check_paper_semantics(nodes, 3, 2)
    assert all((n.status == "eliminated") == (n.operation == "breadth") for n in nodes if n.round)
    # Some node had both its children eliminated and stayed in the pool for the next round.
    by_id = {n.id: n for n in nodes}
    assert any(by_id[n.parent_id].round <= n.round - 2 for n in nodes if n.round >= 2)


# -- operations --------------------------------------------------------------------------------------------
def test_zero_weight_operations_never_appear(stub, store):
    run_id = make_run(store, stub, rounds=3, operation_weights={op: (0.0 if op in ("breadth", "deepen") else 1.0)
                                                                for op in operation_names()})
    run(store, stub, run_id)
    ops = Counter(n.operation for n in store.nodes(run_id) if n.round)
    assert sum(ops.values()) == 15
    assert not {"breadth", "deepen"} & set(ops)
    assert len(ops) >= 2


def test_a_single_operation_is_the_only_one_used(stub, store):
    run_id = make_run(store, stub, rounds=2, operation_weights={"reasoning": 1.0})
    run(store, stub, run_id)
    children = [n for n in store.nodes(run_id) if n.round]
    assert {n.operation for n in children} == {"reasoning"}
    assert {n.template for n in children} == {"en/reasoning"}
    assert all("several steps" in r["body"]["messages"][-1]["content"] for r in stub.chat_requests("evolve"))


def test_each_node_records_its_template_name_and_version(stub, store):
    run_id = make_run(store, stub, rounds=2)
    run(store, stub, run_id)
    for n in store.nodes(run_id):
        if n.round == 0:
            assert n.template is None
            continue
        t = load_template(n.operation, n.language)
        assert (n.template, n.template_version) == (t.name, t.version)
        assert n.prompt and n.raw_output  # the exact prompt sent and the raw reply are kept


# -- reproducibility and the cache ----------------------------------------------------------------------------
def test_one_random_seed_reproduces_the_run_and_the_cache_makes_a_rerun_free(stub, tmp_path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    try:
        ra = make_run(a, stub, rounds=2, random_seed=7)
        run(a, stub, ra)
        calls_first = stub.count()
        rb = make_run(b, stub, rounds=2, random_seed=7)  # another store: no cache to help
        run(b, stub, rb)
        assert stub.count() == 2 * calls_first
        assert canonical(a, ra) == canonical(b, rb)

        # Same store, same seeds and config: every request is answered by the cache.
        before = stub.count()
        ra2 = make_run(a, stub, rounds=2, random_seed=7)
        run(a, stub, ra2)
        assert stub.count() == before
        assert canonical(a, ra2) == canonical(a, ra)
        assert all(c.cached for c in a.calls(ra2)) and a.run_cost(ra2) == 0

        # Another random seed picks other operations.
        rc = make_run(b, stub, rounds=2, random_seed=8)
        run(b, stub, rc)
        ops = lambda s, r: [v[0] for k, v in sorted(canonical(s, r).items())]  # noqa: E731
        assert ops(b, rc) != ops(a, ra)
    finally:
        a.close()
        b.close()


# -- lineages and concurrency -----------------------------------------------------------------------------------
def test_each_seeds_lineage_advances_on_its_own(store):
    slow_seed = "SLOWPOKE Describe the migration of monarch butterflies."
    fast_evolves: set[str] = set()  # the other lineages' evolve prompts seen so far
    lock = threading.Lock()
    others_in_round3 = threading.Event()

    def handler(messages, purpose):
        given = given_prompt(messages)
        if purpose == "evolve" and "SLOWPOKE" not in given:
            with lock:
                fast_evolves.add(messages[-1]["content"])
                if len(fast_evolves) == 3 * 3:  # three lineages, one evolution a round: all started round 3
                    others_in_round3.set()
        if purpose == "evolve" and given == slow_seed:
            # The slow seed's first evolution answers only once every other lineage has started round 3 (its
            # node is made before its evolve request is sent): they cannot have waited for the slow one.
            others_in_round3.wait(timeout=60)
        return scripted_reply(messages, purpose)

    with StubServer(handler=handler) as stub:
        seeds = [Seed(slow_seed)] + SEEDS[:3]
        run_id = make_run(store, stub, seeds=seeds, rounds=3, concurrency=4)
        run(store, stub, run_id, backend=openai_backend_for(stub, timeout_s=120))
        assert stub.max_in_flight <= 4
    assert others_in_round3.is_set(), "the other lineages did not reach round 3 while the slow seed's step waited"
    nodes = store.nodes(run_id)
    check_paper_semantics(nodes, 3, 1)
    slow_root = next(n.id for n in nodes if n.instruction == slow_seed)
    fast_round3 = [n for n in nodes if n.round == 3 and n.root_id != slow_root]
    slow_round2 = next(n for n in nodes if n.round == 2 and n.root_id == slow_root)
    assert len(fast_round3) == 3
    # Every other seed reached round 3 before the slow seed could start its round 2 (no barrier).
    assert max(n.created_at for n in fast_round3) < slow_round2.created_at
    slow_round1 = next(n for n in nodes if n.round == 1 and n.root_id == slow_root)
    assert max(n.created_at for n in fast_round3) > slow_round1.created_at  # they ran at the same time


def test_one_concurrency_limit_is_kept_full_and_never_exceeded(store):
    # The first three requests after the run's structured-output probe are answered only once all three are in
    # the stub together (kept full); every request then takes 30 ms, time for a fourth to arrive if the limit
    # let it (never exceeded).
    full = AllInFlight(3, then_s=0.03, skip=1)
    with StubServer(latency=full) as stub:
        run_id = make_run(store, stub, rounds=2, concurrency=3)
        run(store, stub, run_id, backend=openai_backend_for(stub, timeout_s=120))
        assert full.met and stub.max_in_flight == 3
    with StubServer(latency=0.03) as stub:
        run_id = make_run(store, stub, seeds=SEEDS[:2], rounds=1, concurrency=1, random_seed=1)
        run(store, stub, run_id)
        assert stub.count() > 1 and stub.max_in_flight == 1


# -- stored as it completes, progress ---------------------------------------------------------------------------
def test_nodes_and_calls_are_stored_as_they_complete_and_progress_is_reported(stub, store):
    run_id = make_run(store, stub, rounds=2)
    seen = []

    def progress(p):
        store.flush()  # writes go through the store's writer thread, in order; wait for the queue
        children = store.query("SELECT COUNT(*) FROM nodes WHERE run_id=? AND round>0", (run_id,))[0][0]
        calls = len(store.calls(run_id))
        seen.append((dict(p), children, calls))

    run(store, stub, run_id, progress=progress)
    assert seen
    dones = [p["done"] for p, _, _ in seen]
    assert dones == sorted(dones) and dones[-1] > dones[0]
    assert [p["final"] for p, _, _ in seen] == [False] * (len(seen) - 1) + [True]
    final = seen[-1][0]
    assert final["done"] == final["expected"] == 10 and final["by_status"] == {"kept": 10}
    for p, children, calls in seen:
        assert children >= p["done"]  # the node was written before it was reported
        assert calls >= p["calls"]  # and every call that came back before it
        assert p["expected"] >= p["done"] and p["elapsed_s"] >= 0
    assert final["calls"] == stub.count() and final["cost_usd"] == pytest.approx(store.run_cost(run_id))


# -- stop, resume --------------------------------------------------------------------------------------------------
def completed_hashes(store, run_id) -> set[str]:
    return {c.request_hash for c in store.calls(run_id) if c.error is None and not c.cached}


def test_a_stopped_run_resumes_to_the_same_tree_without_repeating_a_stored_call(stub, tmp_path):
    ref_store, store = Store(tmp_path / "ref.db"), Store(tmp_path / "run.db")
    try:
        ref = make_run(ref_store, stub, rounds=3, random_seed=3)
        run(ref_store, stub, ref)
        ref_requests = stub.count()
        stub.reset()

        run_id = make_run(store, stub, rounds=3, random_seed=3)
        stop = threading.Event()
        assert run(store, stub, run_id, stop_event=stop,
                   progress=lambda p: stop.set() if p["done"] >= 4 else None) == "stopped"
        assert store.get_run(run_id)["status"] == "stopped"
        stopped_at = len([n for n in store.nodes(run_id) if n.round])
        assert 4 <= stopped_at < 15
        done_before = completed_hashes(store, run_id)
        rows_before = len(store.calls(run_id))
        first_part = stub.count()

        assert run(store, stub, run_id) == "finished"
        new_rows = store.calls(run_id)[rows_before:]
        repeated = [c for c in new_rows if c.request_hash in done_before and not c.cached]
        assert not repeated  # no stored call was sent again
        assert stub.count() - first_part == sum(1 for c in new_rows if not c.cached)
        assert stub.count() == ref_requests  # nothing paid twice
        assert canonical(store, run_id) == canonical(ref_store, ref)
    finally:
        ref_store.close()
        store.close()


def test_until_round_pauses_and_resume_continues(stub, store):
    run_id = make_run(store, stub, rounds=3)
    assert run(store, stub, run_id, until_round=1) == "paused"
    assert max(n.round for n in store.nodes(run_id)) == 1
    assert pipeline.next_round(store, run_id) == 2
    requests = stub.count()
    assert run(store, stub, run_id) == "finished"
    nodes = store.nodes(run_id)
    check_paper_semantics(nodes, 3, 1)
    assert stub.count() - requests == 10 * 5  # rounds 2 and 3 only: 5 calls per kept child


def test_failed_steps_are_retried_on_resume(stub, store):
    broken = {"on": True}

    def handler(messages, purpose):
        if broken["on"] and purpose == "respond" and "FLAKY" in messages[-1]["content"]:
            raise RuntimeError("backend down for this one")
        return scripted_reply(messages, purpose)

    stub.handler = handler
    run_id = make_run(store, stub, seeds=[Seed("FLAKY Name a prime number."), SEEDS[0]], rounds=1)
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, max_retries=0)) == "finished"
    failed = [n for n in store.nodes(run_id) if n.status == "failed"]
    assert [(n.rule, n.round) for n in failed] == [("llm_error", 1)]
    assert "500" in failed[0].detail
    broken["on"] = False
    before = stub.count("evolve")
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, max_retries=0)) == "finished"
    again = store.get_node(failed[0].id)
    assert again.status == "kept"
    assert stub.count("evolve") == before  # its evolution came from the cache; only the answer was retried


def test_resume_does_not_fork_a_lineage_that_moved_on_past_a_failure(stub, store):
    failures = {"left": 1}

    def handler(messages, purpose):
        if purpose == "respond" and messages[-1]["content"].startswith("FLAKY") and failures["left"]:
            failures["left"] -= 1  # the first child's answer fails once; everything after works
            raise RuntimeError("a passing fault")
        return scripted_reply(messages, purpose)

    stub.handler = handler
    run_id = make_run(store, stub, seeds=[Seed("FLAKY Name a prime number.")], rounds=2, score_seeds=False)
    backend = lambda: openai_backend_for(stub, max_retries=0)  # noqa: E731
    assert pipeline.run_sync(store, run_id, backend=backend()) == "finished"
    first = {n.id: (n.round, n.status, n.parent_id) for n in store.nodes(run_id)}
    assert sorted(v[:2] for v in first.values()) == [(0, "seed"), (1, "failed"), (2, "kept")]
    check_paper_semantics(store.nodes(run_id), 2, 1)
    # Round 2 already went on from the seed: retrying round 1 now would give the seed a second lineage.
    requests = stub.count()
    assert pipeline.run_sync(store, run_id, backend=backend()) == "finished"
    assert {n.id: (n.round, n.status, n.parent_id) for n in store.nodes(run_id)} == first
    check_paper_semantics(store.nodes(run_id), 2, 1)
    assert stub.count() == requests


# -- budget ----------------------------------------------------------------------------------------------------
def test_budget_stops_the_run_before_it_is_exceeded(stub, store):
    budget = 0.004
    run_id = make_run(store, stub, rounds=2, fanout=2, budget_usd=budget)
    seen = []
    status = run(store, stub, run_id, progress=seen.append)
    assert status == "budget"
    assert store.get_run(run_id)["status"] == "budget"
    spent = store.run_cost(run_id)
    assert 0 < spent <= budget
    assert all(c.price_known for c in store.calls(run_id))
    assert any(n.round for n in store.nodes(run_id))
    assert not [n for n in store.nodes(run_id) if n.status == "failed"]  # a budget stop is not a failure
    assert seen[-1]["final"] and [p["final"] for p in seen].count(True) == 1
    n_calls = len(store.calls(run_id))
    assert stub.count() == len([c for c in store.calls(run_id) if not c.cached])  # every paid call is stored
    time.sleep(0.2)
    assert len(store.calls(run_id)) == n_calls  # nothing keeps running after the run returned

    # Raise the budget and resume: the run finishes and pays only for what was missing.
    run_ = store.get_run(run_id)
    cfg = run_["config"]
    cfg.budget_usd = 1.0
    with store.transaction() as c:
        c.execute("UPDATE runs SET config_json=? WHERE id=?", (json.dumps(cfg.to_dict()), run_id))
    assert run(store, stub, run_id) == "finished"
    check_paper_semantics(store.nodes(run_id), 2, 2)


# -- the responder ----------------------------------------------------------------------------------------------
def test_each_kept_instruction_is_answered_with_its_input(stub, store):
    run_id = make_run(store, stub, rounds=2)
    run(store, stub, run_id)
    respond_prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("respond")]
    with_input = [n for n in store.nodes(run_id) if n.input]
    assert len(with_input) == 3  # the seed and its two descendants keep the input
    for n in store.nodes(run_id):
        assert n.status in ("seed", "kept") and n.response
        prompt = response_prompt(n.instruction, n.input, n.language)
        assert prompt in respond_prompts
        if n.input:
            assert n.input in prompt and n.instruction in prompt
    assert sum(SEEDS[2].input in p for p in respond_prompts) == 3


# -- Korean -------------------------------------------------------------------------------------------------------
KO_SEEDS = [Seed("피보나치 수열을 설명하세요."), Seed("서울의 대중교통 장단점을 정리하세요."), Seed("Explain recursion.")]


def test_korean_seeds_evolve_with_korean_templates(stub, store):
    run_id = make_run(store, stub, seeds=KO_SEEDS, rounds=2, language="auto")
    run(store, stub, run_id)
    nodes = store.nodes(run_id)
    for n in nodes:
        korean = any("\uac00" <= ch <= "\ud7a3" for ch in n.instruction[:10])
        assert n.language == ("ko" if korean else "en")
        if n.round:
            assert n.template.startswith("ko/" if korean else "en/")
    evolve_prompts = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("evolve")]
    ko_prompts = [p for p in evolve_prompts if "피보나치" in p or "서울" in p]
    assert len(ko_prompts) == 4 and all("한국어로 쓰세요" in p for p in ko_prompts)
    assert all("한국어로" not in p for p in evolve_prompts if "recursion" in p)
    ko_judge = [r["body"]["messages"][-1]["content"] for r in stub.chat_requests("difficulty")]
    assert sum("1점에서 10점" in p for p in ko_judge) == 6  # 2 seeds + 4 children, judged in Korean


@pytest.mark.parametrize("language, prefix", [("en", "en/"), ("ko", "ko/")])
def test_language_can_be_forced(stub, store, language, prefix):
    run_id = make_run(store, stub, seeds=KO_SEEDS, rounds=1, language=language)
    run(store, stub, run_id)
    assert {n.template[:3] for n in store.nodes(run_id) if n.round} == {prefix}


# -- on the stub server: a 5 x 3 run with eliminations, every rule, a storm ---------------------------------------
def test_five_seeds_three_rounds_with_eliminations_keep_a_consistent_lineage(stub, store):
    def handler(messages, purpose):
        text = messages[-1]["content"]
        if purpose == "evolve" and int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0:
            return "#Rewritten Prompt#:\n" + given_prompt(messages)  # unchanged: no new information
        if purpose == "respond" and "misconception" in text:
            return "I'm sorry, but I cannot help with that."
        return scripted_reply(messages, purpose)

    stub.handler = handler
    run_id = make_run(store, stub, rounds=3)
    assert run(store, stub, run_id) == "finished"
    nodes = store.nodes(run_id)
    by_id = {n.id: n for n in nodes}
    check_lineage(nodes)
    check_paper_semantics(nodes, 3, 1)
    rules = Counter(n.rule for n in nodes if n.status == "eliminated")
    assert rules["no_new_information"] >= 1 and rules["refusal"] >= 1
    # A parent carried over: the next round's child of an eliminated child's parent is that same parent.
    carried = 0
    for e in nodes:
        if e.status == "eliminated" and e.round < 3:
            (nxt,) = [n for n in nodes if n.root_id == e.root_id and n.round == e.round + 1]
            assert nxt.parent_id == e.parent_id
            carried += 1
    assert carried >= 2
    assert any(by_id[n.parent_id].round < n.round - 1 for n in nodes if n.round)
    for n in nodes:  # every path from a node back to its seed
        path = [n]
        while path[-1].parent_id:
            path.append(by_id[path[-1].parent_id])
        assert [p.round for p in path] == sorted({p.round for p in path}, reverse=True)
        assert path[-1].id == n.root_id


ALL_RULE_SEEDS = {
    "ECHO": "ECHO Describe the life cycle of a butterfly.",
    "SAME": "SAME Describe how a refrigerator keeps food cold.",
    "REFUSE": "REFUSE Explain how to pick a strong password.",
    "EMPTY": "EMPTY List the planets of the solar system.",
    "LEAK": "LEAK Summarise the causes of the French Revolution.",
    "LOWQ": "LOWQ Explain how tides are caused by the moon.",
    "BROKEN": "BROKEN Describe the water cycle in detail.",
    "DUP": "DUP Explain photosynthesis in plants.",
    "DRIFT": "DRIFT Explain how a savings account earns interest.",
    "OFFTOPIC": "OFFTOPIC Describe how to care for a houseplant.",
    "PLAIN": "PLAIN Explain how photosynthesis works in green plants today.",
}
LONG_CLAUSE = ("while comparing at least three historical perspectives, citing two concrete numeric examples, "
               "and ending with a short checklist for beginners")


def all_rules_handler(messages, purpose):
    text = messages[-1]["content"]
    if purpose == "evolve":
        given = given_prompt(messages)
        if "BROKEN" in given:
            raise RuntimeError("this request always fails")
        if "ECHO" in given:
            return "#Rewritten Prompt#:\n" + given
        if "LEAK" in given:
            return "#Rewritten Prompt#:\nMake the given prompt harder: " + given
        if "DUP" in given:  # a copy of another seed, on its parent's subject
            return "#Rewritten Prompt#:\nExplain how photosynthesis works in green plants."
        if "DRIFT" in given:  # the English seed's child comes back in Korean
            return "#Rewritten Prompt#:\n예금 계좌에 이자가 붙는 원리를 월복리 예시와 함께 설명하세요."
        if "OFFTOPIC" in given:  # a child about something else
            return "#Rewritten Prompt#:\nWrite a SQL query that lists the five customers with the largest total orders."
        return f"#Rewritten Prompt#:\n{given} {LONG_CLAUSE}"
    if purpose == "respond" and "REFUSE" in text:
        return "Sorry, I can't help with that."
    if purpose == "respond" and "EMPTY" in text:
        return "Well... it is what it is."
    if purpose == "equal":
        return "Equal" if "SAME" in text.split("The Second Prompt:")[-1] else "Not Equal"
    if purpose == "quality":
        return "Score: 2\nInaccurate." if "LOWQ" in text else "Score: 5\nAccurate."
    return scripted_reply(messages, purpose)


def test_every_rule_is_triggered_and_stored(stub, store):
    stub.handler = all_rules_handler
    rules = RuleConfig(duplicate=True, quality_filter=True)
    run_id = make_run(store, stub, seeds=[Seed(s) for s in ALL_RULE_SEEDS.values()], rounds=1, rules=rules)
    assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, max_retries=1)) == "finished"
    kids = {next(k for k in ALL_RULE_SEEDS if ALL_RULE_SEEDS[k] == store.get_node(n.parent_id).instruction): n
            for n in store.nodes(run_id) if n.round == 1}
    got = {k: (n.status, n.rule) for k, n in kids.items()}
    assert got == {
        "ECHO": ("eliminated", "no_new_information"), "SAME": ("eliminated", "no_new_information"),
        "REFUSE": ("eliminated", "refusal"), "EMPTY": ("eliminated", "empty_response"),
        "LEAK": ("eliminated", "prompt_leak"), "LOWQ": ("eliminated", "low_quality"),
        "BROKEN": ("failed", "llm_error"), "DUP": ("eliminated", "duplicate"), "PLAIN": ("kept", None),
        "DRIFT": ("eliminated", "language_drift"), "OFFTOPIC": ("eliminated", "off_topic")}
    assert kids["ECHO"].detail == "identical to the parent"  # the cheap check
    assert "judge says Equal" in kids["SAME"].detail  # the LLM judge
    assert "ROUGE-L" in kids["DUP"].detail and "quality 2" in kids["LOWQ"].detail
    assert "500" in kids["BROKEN"].detail
    # Each elimination is stored as a failed verdict row with the same detail.
    for k, n in kids.items():
        if n.status == "eliminated":
            rows = [s for s in store.scores(node_id=n.id) if s.metric == f"rule:{n.rule}" and s.value == 0.0]
            assert len(rows) == 1 and rows[0].detail == n.detail, k
    # The broken request was tried 1 + max_retries times and stored as failed calls.
    broken_calls = [c for c in store.calls(run_id) if c.node_id == kids["BROKEN"].id]
    assert broken_calls and all(c.error for c in broken_calls)
    assert sum("BROKEN" in r["body"]["messages"][-1]["content"] for r in stub.chat_requests("evolve")) == 2
    assert store.run_summary(run_id)["by_rule"] == {"no_new_information": 2, "refusal": 1, "empty_response": 1,
                                                    "prompt_leak": 1, "low_quality": 1, "llm_error": 1,
                                                    "duplicate": 1, "language_drift": 1, "off_topic": 1}


class StormStub(StubServer):
    """A stub whose random faults are 429 or 500, half and half."""

    def _next_fault(self):
        fault = super()._next_fault()
        if fault is not None and self._rng.random() < 0.5:
            return 500
        return fault


def test_a_429_and_500_storm_is_survived(store):
    with StormStub(seed=11) as stub:
        stub.error_rate = 0.3
        stub.error_status = 429
        run_id = make_run(store, stub, rounds=2, concurrency=6)
        status = pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, max_retries=12))
        statuses = Counter(r["status"] for r in stub.chat_requests())
    assert status == "finished"
    assert statuses[429] > 3 and statuses[500] > 3
    assert statuses[200] == len([c for c in store.calls(run_id) if not c.cached])
    nodes = store.nodes(run_id)
    assert not [n for n in nodes if n.status == "failed"]
    assert not [c for c in store.calls(run_id) if c.error]
    check_paper_semantics(nodes, 2, 1)
    assert Counter(n.status for n in nodes) == {"seed": 5, "kept": 10}
