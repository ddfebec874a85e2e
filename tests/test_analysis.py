import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import COST, DIFFICULTY_STEP, build_run

from evolab.analysis import frames as analysis
from evolab.engine.eliminator import all_rule_ids
from evolab.schema import Node, RunConfig, Seed
from evolab.store import NODE_FIELDS
from evolab.text.complexity import METRICS, measure


@pytest.fixture
def sample(store):
    return build_run(store, rounds=2)


@pytest.fixture
def nodes(store, sample):
    return analysis.nodes_frame(store, sample.run_id)


def test_mean_ci_hand_values():
    mean, lo, hi, n = analysis.mean_ci([1, 2, 3])
    # sd = 1, t(0.975, 2) = 4.302653
    assert (mean, n) == (2.0, 3)
    assert lo == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert hi == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-5)
    m1 = analysis.mean_ci([5.0, None, float("nan")])
    assert m1[0] == 5.0 and math.isnan(m1[1]) and m1[3] == 1
    assert analysis.mean_ci([])[3] == 0


def test_nodes_frame_has_fields_scores_and_lengths(sample, nodes):
    assert len(nodes) == len(sample.nodes)
    for col in NODE_FIELDS + ["difficulty", "quality", *METRICS, "instruction_length", "seed_instruction"]:
        assert col in nodes.columns
    by_id = nodes.set_index("id")
    for node in sample.nodes:
        row = by_id.loc[node.id]
        assert row["status"] == node.status and row["operation"] == node.operation
        expected = sample.scores[node.id]
        if "difficulty" in expected:
            assert row["difficulty"] == pytest.approx(expected["difficulty"])
            assert row["cx_index"] == pytest.approx(expected["cx_index"])
        assert row["instruction_length"] == len(node.instruction)
        root = next(n for n in sample.nodes if n.id == node.root_id)
        assert row["seed_instruction"] == root.instruction


def test_nodes_frame_fills_complexity_when_not_stored(store, sample, nodes):
    failed = nodes[nodes["status"] == "failed"]
    assert len(failed) and failed["difficulty"].isna().all()  # no scores stored for failed nodes
    row = failed.iloc[0]
    assert row["cx_index"] == pytest.approx(measure(row["instruction"], row["input"], row["language"])["index"])
    raw = analysis.nodes_frame(store, sample.run_id, fill_complexity=False)
    assert raw[raw["status"] == "failed"]["cx_index"].isna().all()


def test_nodes_frame_empty_and_several_runs(store, sample):
    empty_run = store.create_run(RunConfig(), [Seed("x")])
    empty = analysis.nodes_frame(store, empty_run)
    assert empty.empty and "difficulty" in empty and "cx_index" in empty
    other = build_run(store, name="other")
    both = analysis.nodes_frame(store, [sample.run_id, other.run_id])
    assert len(both) == len(sample.nodes) + len(other.nodes)
    assert set(both["run_id"]) == {sample.run_id, other.run_id}


def test_round_operation_counts(sample, nodes):
    frame = analysis.round_operation_frame(nodes)
    expected = Counter((n.round, n.operation) for n in sample.nodes)
    got = {(r, o): n for r, o, n in frame[["round", "operation", "n"]].itertuples(index=False)}
    assert got == dict(expected)
    for (r, op), g in frame.groupby(["round", "operation"]):
        members = [n for n in sample.nodes if n.round == r and n.operation == op]
        row = g.iloc[0]
        assert row["kept"] == sum(n.status == "kept" for n in members)
        assert row["eliminated"] == sum(n.status == "eliminated" for n in members)
        for rule in all_rule_ids():
            assert row[f"rule_{rule}"] == sum(n.rule == rule for n in members)
        diffs = [sample.scores[n.id]["difficulty"] for n in members if "difficulty" in sample.scores[n.id]]
        if diffs:
            assert row["difficulty_mean"] == pytest.approx(np.mean(diffs))
            assert row["difficulty_n"] == len(diffs)
            if len(diffs) >= analysis.MIN_N_FOR_CI and np.std(diffs) > 0:
                assert 1 <= row["difficulty_lo"] < row["difficulty_mean"] < row["difficulty_hi"] <= 10
            elif len(diffs) < analysis.MIN_N_FOR_CI:
                assert np.isnan(row["difficulty_lo"]) and np.isnan(row["difficulty_hi"])
        assert row["instruction_length_mean"] == pytest.approx(np.mean([len(n.instruction) for n in members]))


def test_round_operation_frame_with_all_rows(sample, nodes):
    frame = analysis.round_operation_frame(nodes, include_all=True)
    overall = frame[frame["operation"] == "all"].set_index("round")
    for r in (0, 1, 2):
        assert overall.loc[r, "n"] == sum(n.round == r for n in sample.nodes)
    per_round = analysis.round_frame(nodes)
    assert list(per_round["n"]) == [overall.loc[r, "n"] for r in (0, 1, 2)]
    pool = analysis.round_frame(nodes, statuses=("seed", "kept"))
    assert list(pool["n"]) == [sum(n.round == r and n.status in ("seed", "kept") for n in sample.nodes)
                               for r in (0, 1, 2)]


def test_pure_functions_do_not_change_their_input(nodes):
    before = nodes.copy()
    analysis.round_operation_frame(nodes, include_all=True)
    analysis.deltas_frame(nodes)
    analysis.eliminations_frame(nodes, "operation")
    pd.testing.assert_frame_equal(nodes, before)


def test_deltas_per_operation(sample, nodes):
    deltas = analysis.deltas_frame(nodes)
    d = deltas.set_index(["operation", "metric"])
    # the fixture raises difficulty by a fixed step per operation: every delta equals it
    for op, step in DIFFICULTY_STEP.items():
        children = [n for n in sample.nodes if n.operation == op and "difficulty" in sample.scores[n.id]]
        if not children:
            continue
        row = d.loc[(op, "difficulty")]
        assert row["mean"] == pytest.approx(step)
        assert row["n"] == len(children)
        assert row["share_up"] == (1.0 if step > 0 else 0.0)
    constraints = d.loc[("constraints", "cx_index")]
    assert constraints["mean"] > 1  # "at least ... no more than ..." adds constraints
    kept_only = analysis.deltas_frame(nodes, statuses=("kept",))
    assert kept_only["n"].sum() < deltas["n"].sum()
    pairs = analysis.pairs_frame(nodes)
    assert len(pairs) == sum(n.parent_id is not None for n in sample.nodes)


def test_eliminations_by_rule_and_round_and_operation(sample, nodes):
    by_round = analysis.eliminations_frame(nodes, "round")
    expected = Counter((n.round, n.rule) for n in sample.nodes if n.status in ("eliminated", "failed"))
    got = {(r, rule): c for r, rule, c in by_round[["round", "rule", "count"]].itertuples(index=False)}
    assert got == dict(expected) and len(expected) >= 3
    produced = Counter(n.round for n in sample.nodes if n.status != "seed")
    for r, rule, c, rate in by_round.itertuples(index=False):
        assert rate == pytest.approx(c / produced[r])
    by_op = analysis.eliminations_frame(nodes, "operation")
    expected_op = Counter((n.operation, n.rule) for n in sample.nodes if n.status in ("eliminated", "failed"))
    assert {(o, rule): c for o, rule, c in by_op[["operation", "rule", "count"]].itertuples(index=False)} == \
        dict(expected_op)
    table = analysis.eliminations_table(nodes, "round")
    assert int(table.to_numpy().sum()) == sum(expected.values())


def test_cost_per_purpose_and_round(store, sample, nodes):
    calls = analysis.calls_frame(store, sample.run_id)
    assert len(calls) == len(sample.calls)
    judge_calls = calls[calls["purpose"] == "judge"]
    assert judge_calls["round"].isna().all()  # a call without a node has no round
    cost = analysis.cost_frame(calls)
    node_round = {n.id: n.round for n in sample.nodes}
    for purpose, r, n_calls, cost_usd, cached in cost[["purpose", "round", "calls", "cost_usd", "cached"]].itertuples(
            index=False):
        mine = [c for c in sample.calls if c.purpose == purpose and
                ((math.isnan(r) and c.node_id is None) or (c.node_id is not None and node_round[c.node_id] == r))]
        assert n_calls == len(mine)
        assert cost_usd == pytest.approx(COST[purpose] * len(mine))
        assert cached == sum(c.cached for c in mine)
    assert cost["cost_usd"].sum() == pytest.approx(store.run_cost(sample.run_id))
    assert cost["errors"].sum() == sum(c.error is not None for c in sample.calls)
    assert (cost["tokens"] == cost["prompt_tokens"] + cost["completion_tokens"]).all()
    assert analysis.cost_frame(calls.iloc[0:0]).empty


def test_run_overview(store, sample):
    o = analysis.run_overview(store, sample.run_id)
    assert o["model"] == "gpt-4o-mini" and o["rounds"] == 2 and o["fanout"] == 2 and o["random_seed"] == 7
    assert o["seeds"] == 4 and o["nodes"] == len(sample.nodes)
    assert o["by_status"] == dict(Counter(n.status for n in sample.nodes))
    assert o["by_rule"] == dict(Counter(n.rule for n in sample.nodes if n.rule))
    assert o["calls"] == len(sample.calls)
    assert o["cost_usd"] == pytest.approx(sum(c.cost_usd for c in sample.calls))
    assert o["tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in sample.calls)
    assert o["kept_per_round"][0] == 4
    with pytest.raises(KeyError, match="No run"):
        analysis.run_overview(store, "nope")


def test_empty_frames_keep_their_columns():
    nodes = analysis._empty_nodes_frame()
    assert analysis.round_operation_frame(nodes, include_all=True).empty
    assert "difficulty_mean" in analysis.round_operation_frame(nodes).columns
    assert list(analysis.deltas_frame(nodes).columns) == ["operation", "metric", "n", "mean", "lo", "hi", "share_up"]
    assert analysis.eliminations_frame(nodes).empty and analysis.pairs_frame(nodes).empty


def test_a_pipeline_run_analyses(store):
    pipeline = pytest.importorskip("evolab.engine.pipeline")
    from evolab.llm.fake import FakeBackend

    run_id = pipeline.create_run(store, [Seed("Write a poem about cats."), Seed("고양이에 대한 시를 쓰세요.")],
                                 RunConfig(model="fake", base_url="http://127.0.0.1:9/v1", rounds=2, fanout=2))
    pipeline.run_sync(store, run_id, backend=FakeBackend())
    nodes = analysis.nodes_frame(store, run_id)
    assert len(nodes) == len(store.nodes(run_id)) and nodes["difficulty"].notna().any()
    frame = analysis.round_operation_frame(nodes, include_all=True)
    assert frame.loc[frame["operation"] == "all", "n"].sum() == len(nodes)
    cost = analysis.cost_frame(analysis.calls_frame(store, run_id, nodes))
    assert cost["calls"].sum() == len(store.calls(run_id))
    assert analysis.run_overview(store, run_id)["status"] == "finished"


def test_node_without_known_parent_is_not_a_pair(store):
    run_id = store.create_run(RunConfig(), [Seed("x")])
    store.record_step(Node(id="orphan", run_id=run_id, parent_id="gone", root_id="gone", round=1,
                           operation="deepen", instruction="y", status="kept"))
    nodes = analysis.nodes_frame(store, run_id)
    assert analysis.pairs_frame(nodes).empty
    assert nodes.loc[0, "seed_instruction"] is None or pd.isna(nodes.loc[0, "seed_instruction"])
