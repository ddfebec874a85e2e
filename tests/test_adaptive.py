"""Adaptive operation weights (`--ops adaptive`): Thompson sampling on "kept and harder than its parent", every
decision stored with the posterior and draws it used, a resumed run reading its decisions back, English and
Korean seeds, the CLI option; on the hidden-rates stub (evolab/testing/op_rates_stub.py)."""
from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from evolab.cli.common import BadInput
from evolab.cli.main import build_parser, main
from evolab.cli.runs import config_from_args
from evolab.engine import pipeline
from evolab.engine.adaptive import AdaptiveOperations, ThompsonSampler, parse_ops_option, reward_for
from evolab.engine.operations import get_operation, load_template, operation_names
from evolab.llm import FakeBackend
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.op_rates_stub import OperationRates, operation_of

GOOD = "constraints"
RATES = {op: (0.9 if op == GOOD else 0.1) for op in operation_names()}
EN_SEEDS = [Seed(f"Explain idea number {i} of basic physics in plain words.") for i in range(24)]
KO_SEEDS = [Seed(f"{i}번째 역사적 사건의 원인을 간단히 설명하세요.") for i in range(24)]


def adaptive_run(store, seeds, *, rounds=4, random_seed=0, concurrency=4, hidden=RATES, **cfg):
    config = RunConfig(model="fake", base_url="http://stub.invalid/v1", rounds=rounds, concurrency=concurrency,
                       random_seed=random_seed, operation_sampling=cfg.pop("operation_sampling", "adaptive"), **cfg)
    run_id = pipeline.create_run(store, list(seeds), config)
    return run_id, FakeBackend(handler=OperationRates(hidden, seed=random_seed))


# -- parsing ---------------------------------------------------------------------------------------------
def test_ops_option_parses_adaptive_and_keeps_weights_as_before():
    assert parse_ops_option("adaptive") == ({op: 1.0 for op in operation_names()}, "adaptive")
    assert parse_ops_option("Adaptive:constraints,deepen") == ({"constraints": 1.0, "deepen": 1.0}, "adaptive")
    assert parse_ops_option("constraints=2,breadth=1") == ({"constraints": 2.0, "breadth": 1.0}, "weights")
    with pytest.raises(ValueError, match="After 'adaptive:'"):
        parse_ops_option("adaptive:")
    with pytest.raises(ValueError, match="Unknown operation 'harder'"):
        parse_ops_option("adaptive:harder")


def test_cli_ops_adaptive_sets_the_run_config(tmp_path, capsys):
    args = build_parser().parse_args(["run", "seeds.jsonl", "--ops", "adaptive:constraints,breadth"])
    cfg = config_from_args(args)
    assert cfg.operation_sampling == "adaptive" and cfg.operation_weights == {"constraints": 1.0, "breadth": 1.0}
    assert config_from_args(build_parser().parse_args(["run", "s.jsonl"])).operation_sampling == "weights"
    with pytest.raises(BadInput, match="--ops"):
        config_from_args(build_parser().parse_args(["run", "s.jsonl", "--ops", "adaptive:nope"]))
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Explain tides.\n", encoding="utf-8")
    assert main(["run", str(seeds), "--db", str(tmp_path / "e.db"), "--ops", "adaptive:nope"]) == 2
    assert "Unknown operation 'nope'" in capsys.readouterr().err


# -- the reward and the sampler ----------------------------------------------------------------------------
def test_reward_is_kept_and_harder_kept_alone_without_difficulty_and_failures_do_not_count():
    assert reward_for("kept", 6, 5) == (1.0, "kept, difficulty 5 -> 6")
    assert reward_for("kept", 5, 5)[0] == 0.0
    assert reward_for("kept", 4, 5)[0] == 0.0
    assert reward_for("eliminated", 9, 1) == (0.0, "eliminated")
    assert reward_for("kept", None, 5) == (1.0, "kept (difficulty not known: kept alone)")
    assert reward_for("kept", 5, None)[0] == 1.0
    assert reward_for("failed", 9, 1)[0] is None


def test_a_choice_is_a_function_of_the_posterior_the_seed_and_the_node_only():
    a, b = ThompsonSampler(operation_names(), random_seed=7), ThompsonSampler(operation_names(), random_seed=7)
    for _ in range(5):
        a.update("en", "deepen", 1.0)
        b.update("en", "deepen", 1.0)
    assert a.choose("node-1", "en") == b.choose("node-1", "en")
    assert a.choose("node-1", "en") != ThompsonSampler(operation_names(), random_seed=8).choose("node-1", "en")
    # languages learn apart
    assert a.posterior("ko")["deepen"] == [1.0, 1.0] and a.posterior("en")["deepen"] == [6.0, 1.0]


def test_the_sampler_alone_learns_the_better_arm():
    """Bernoulli rewards at 0.7 for deepen and 0.3 for the others, 400 seeded pulls: most of the last 100 pick
    deepen (uniform would pick it 1 in 6)."""
    sampler, rng = ThompsonSampler(operation_names(), random_seed=3), random.Random(3)
    picks = []
    for i in range(400):
        op = sampler.choose(f"n{i}", "en").operation
        sampler.update("en", op, 1.0 if rng.random() < (0.7 if op == "deepen" else 0.3) else 0.0)
        picks.append(op)
    assert picks[-100:].count("deepen") > 70


def test_the_stub_tells_operations_apart_in_both_languages():
    for lang in ("en", "ko"):
        for op in operation_names():
            prompt, _ = get_operation(op).build_prompt("바다에 대한 시를 쓰세요." if lang == "ko" else "Write a poem.",
                                                       language=lang)
            assert operation_of(prompt) == op, (lang, op)
    assert operation_of("Some other prompt " + load_template("difficulty").text) is None


# -- runs on the hidden-rates stub ---------------------------------------------------------------------------
@pytest.mark.parametrize("seeds", [EN_SEEDS, KO_SEEDS], ids=["en", "ko"])
def test_thompson_sampling_concentrates_on_the_operation_that_succeeds(tmp_path, seeds):
    """Hidden rates: constraints makes a kept, harder child 90% of the time, every other operation 10%. Uniform
    sampling picks it 1/6 of the time; adaptive sampling must pick it in most of the later decisions, and get
    more kept children per call. Seeded: the same numbers every run."""
    shares, kept_per_call = {}, {}
    for mode in ("weights", "adaptive"):
        store = Store(tmp_path / f"{mode}.db")
        run_id, backend = adaptive_run(store, seeds, operation_sampling=mode)
        assert pipeline.run_sync(store, run_id, backend=backend) == "finished"
        children = [n for n in store.nodes(run_id) if n.round > 0]
        late = [n for n in children if n.round >= 3]
        shares[mode] = sum(n.operation == GOOD for n in late) / len(late)
        kept_per_call[mode] = sum(n.status == "kept" for n in children) / store.run_summary(run_id)["calls"]
        store.close()
    assert shares["weights"] < 0.35
    assert shares["adaptive"] > 0.6
    assert kept_per_call["adaptive"] > kept_per_call["weights"]


def test_every_decision_is_stored_with_the_posterior_and_draws_that_reproduce_it(store):
    run_id, backend = adaptive_run(store, EN_SEEDS[:10] + KO_SEEDS[:4], rounds=3)
    assert pipeline.run_sync(store, run_id, backend=backend) == "finished"
    children = {n.id: n for n in store.nodes(run_id) if n.round > 0}
    decisions = store.op_decisions(run_id)
    assert {d["node_id"] for d in decisions} == set(children)
    assert [d["seq"] for d in decisions] == list(range(len(decisions)))
    sampler = ThompsonSampler(operation_names(), random_seed=0)
    for d in decisions:
        node = children[d["node_id"]]
        assert d["operation"] == node.operation and d["language"] == node.language
        sampler.posteriors[d["language"]] = {op: list(ab) for op, ab in d["posterior"].items()}
        again = sampler.choose(d["node_id"], d["language"])  # same posterior + same RNG -> same draws and choice
        assert again.draws == pytest.approx(d["draws"]) and again.operation == d["operation"]
        assert d["operation"] == max(d["draws"], key=d["draws"].get)
        assert d["reward"] in (0.0, 1.0)
    # A posterior only ever counts rewards of earlier decisions.
    for d in decisions:
        counted = sum(a + b - 2 for a, b in d["posterior"].values())
        earlier = sum(1 for e in decisions if e["seq"] < d["seq"] and e["language"] == d["language"])
        assert counted <= earlier
    # The final posterior is the prior plus every reward, per language.
    final = AdaptiveOperations(store, run_id, operation_names(), 0).sampler
    for lang in ("en", "ko"):
        wins = Counter(d["operation"] for d in decisions if d["language"] == lang and d["reward"] == 1.0)
        tries = Counter(d["operation"] for d in decisions if d["language"] == lang)
        assert final.posterior(lang) == {op: [1.0 + wins[op], 1.0 + tries[op] - wins[op]] for op in operation_names()}


def test_kept_children_that_rose_in_difficulty_earn_the_reward(store):
    run_id, backend = adaptive_run(store, EN_SEEDS[:8], rounds=2)
    pipeline.run_sync(store, run_id, backend=backend)
    scores = {}
    for s in store.scores(run_id):
        if s.metric == "difficulty":
            scores[s.node_id] = s.value
    nodes = {n.id: n for n in store.nodes(run_id)}
    for d in store.op_decisions(run_id):
        node = nodes[d["node_id"]]
        harder = node.status == "kept" and scores[node.id] > scores[node.parent_id]
        assert d["reward"] == (1.0 if harder else 0.0)


def test_without_difficulty_scores_the_reward_is_kept_alone(store):
    run_id, backend = adaptive_run(store, EN_SEEDS[:6], rounds=2, scorers=["complexity", "quality"])
    pipeline.run_sync(store, run_id, backend=backend)
    nodes = {n.id: n for n in store.nodes(run_id)}
    for d in store.op_decisions(run_id):
        assert d["reward"] == (1.0 if nodes[d["node_id"]].status == "kept" else 0.0)
        if d["reward"]:
            assert "kept alone" in d["reward_detail"]


def test_a_resumed_run_reads_its_decisions_back(tmp_path):
    store = Store(tmp_path / "r.db")
    run_id, backend = adaptive_run(store, EN_SEEDS[:12], rounds=4, concurrency=3)
    stop = threading.Event()
    status = pipeline.run_sync(store, run_id, backend=backend, stop_event=stop,
                               progress=lambda p: stop.set() if p["done"] >= 15 else None)
    assert status == "stopped"
    before = {d["node_id"]: d for d in store.op_decisions(run_id)}
    nodes_before = {n.id: (n.operation, n.status, n.instruction) for n in store.nodes(run_id) if n.round}
    assert 15 <= len(nodes_before) < 48
    assert pipeline.run_sync(store, run_id, backend=backend) == "finished"
    after = {d["node_id"]: d for d in store.op_decisions(run_id)}
    for nid, d in before.items():  # same operation, posterior and draws: nothing was sampled again
        assert after[nid]["operation"] == d["operation"] and after[nid]["posterior"] == d["posterior"]
        assert after[nid]["draws"] == d["draws"] and after[nid]["seq"] == d["seq"]
    nodes_after = {n.id: n for n in store.nodes(run_id)}
    for nid, (op, status_, text) in nodes_before.items():
        assert (nodes_after[nid].operation, nodes_after[nid].status, nodes_after[nid].instruction) == (op, status_, text)
    assert all(nodes_after[nid].operation == d["operation"] for nid, d in after.items())
    assert sorted(d["seq"] for d in after.values()) == list(range(len(after)))
    store.close()


def test_a_decided_node_keeps_its_operation_whatever_the_posterior_says_now(store):
    run_id, _ = adaptive_run(store, EN_SEEDS[:1])
    first = AdaptiveOperations(store, run_id, operation_names(), 0)
    op = first.choose("node-x", "en")
    store.flush()
    again = AdaptiveOperations(store, run_id, operation_names(), 0)
    for other in operation_names():  # a posterior that now strongly favours another operation
        if other != op:
            for _ in range(50):
                again.sampler.update("en", other, 1.0)
            break
    assert again.choose("node-x", "en") == op
    assert again.seq == 1 and len(store.op_decisions(run_id)) == 1


class _NoEmbedder:
    name = "none"
    dim = 0
    texts_embedded = 0

    def encode(self, texts):
        raise RuntimeError("no embedder in this test")


def test_the_report_has_the_operations_section_and_the_weights_of_an_adaptive_run(tmp_path):
    from evolab.analysis.report import write_report

    store = Store(tmp_path / "rep.db")
    for mode in ("weights", "adaptive"):
        run_id, backend = adaptive_run(store, EN_SEEDS[:4] + KO_SEEDS[:2], rounds=2, operation_sampling=mode)
        pipeline.run_sync(store, run_id, backend=backend)
        html = write_report(store, run_id, tmp_path / f"{mode}.html", embedder=_NoEmbedder()).read_text("utf-8")
        assert "<h2>Operations</h2>" in html and "What each operation did" in html and "calls/kept" in html
        assert ("Adaptive operation weights" in html) == (mode == "adaptive")
        if mode == "adaptive":
            assert "kept and harder than its parent" in html
    store.close()


def test_the_dataset_card_says_the_operations_were_chosen_adaptively(store):
    from evolab.export.card import dataset_card

    run_id, backend = adaptive_run(store, EN_SEEDS[:3], rounds=1, operation_weights={"constraints": 1.0,
                                                                                     "deepen": 1.0, "breadth": 0.0})
    pipeline.run_sync(store, run_id, backend=backend)
    card = str(dataset_card(store, run_id))
    assert "- Operations adaptive (Thompson sampling on kept and harder) among constraints, deepen" in card
    assert {d["operation"] for d in store.op_decisions(run_id)} <= {"constraints", "deepen"}


def test_cli_run_with_ops_adaptive_then_runs_by_operation(tmp_path, capsys):
    """The whole path a user takes: `run --ops adaptive` on an endpoint (the stub, hidden rates), then
    `runs --by-operation` with the final posterior."""
    from conftest import STUB_KEY_ENV

    from evolab.testing.stub_server import StubServer

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("\n".join(s.instruction for s in EN_SEEDS[:6] + KO_SEEDS[:2]) + "\n", encoding="utf-8")
    db = str(tmp_path / "cli.db")
    with StubServer(handler=OperationRates(RATES)) as stub:
        assert main(["run", str(seeds), "--db", db, "--rounds", "2", "--ops", "adaptive", "--base-url",
                     stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV]) == 0
    capsys.readouterr()
    assert main(["runs", "--db", db, "--by-operation", "--split", "language"]) == 0
    out = capsys.readouterr().out
    assert "(adaptive sampling)" in out and "posterior after the last reward" in out
    store = Store(db)
    run_id = store.latest_run_id()
    decisions = store.op_decisions(run_id)
    assert len(decisions) == 16 and {d["language"] for d in decisions} == {"en", "ko"}
    final = [line.split() for line in out.splitlines() if line.split()[:1] in (["en"], ["ko"])]
    assert sum(int(row[-1]) for row in final) == 16  # "chosen" column: every decision counted once
    store.close()
