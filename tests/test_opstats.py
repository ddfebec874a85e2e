"""Operation analytics against hand-computed values on a small crafted store (English and Korean nodes):
tries, kept share, eliminations by rule, parent -> child changes with their intervals, spend per kept child,
splits by round, language and skill; `runs --by-operation`; the figures; the adaptive weights frame."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from evolab.analysis import frames as analysis
from evolab.analysis import opstats, viz
from evolab.cli.main import main
from evolab.schema import LLMCall, Node, RunConfig, Score, Seed
from evolab.store import Store


def node(run_id, nid, parent, round_, op, status, *, rule=None, lang="en", skill=None, root="S"):
    return Node(id=nid, run_id=run_id, parent_id=parent, root_id=root, round=round_, operation=op,
                instruction=f"instruction {nid}", status=status, rule=rule, language=lang, skill=skill)


@pytest.fixture
def crafted(tmp_path):
    """Seed S (en, difficulty 4, cx 1.0) and K (ko, skill 수학, difficulty 3, cx 1.0).
    Round 1: A constraints kept (6, 2.0); B constraints eliminated prompt_leak (no difficulty, cx 1.5);
             C deepen kept (5, 1.2); D deepen failed llm_error; H (from K) breadth kept (3, 1.0), Korean.
    Round 2 from A: E constraints kept (8, 3.0), F kept (7, 2.5), G kept (6, 2.0)."""
    store = Store(tmp_path / "crafted.db")
    run_id = store.create_run(RunConfig(model="m", base_url="http://x/v1"), [Seed("s"), Seed("k")], name="crafted")
    store.save_nodes([
        node(run_id, "S", None, 0, "seed", "seed"),
        node(run_id, "K", None, 0, "seed", "seed", lang="ko", skill="수학", root="K"),
        node(run_id, "A", "S", 1, "constraints", "kept"),
        node(run_id, "B", "S", 1, "constraints", "eliminated", rule="prompt_leak"),
        node(run_id, "C", "S", 1, "deepen", "kept"),
        node(run_id, "D", "S", 1, "deepen", "failed", rule="llm_error"),
        node(run_id, "H", "K", 1, "breadth", "kept", lang="ko", skill="수학", root="K"),
        node(run_id, "E", "A", 2, "constraints", "kept"),
        node(run_id, "F", "A", 2, "constraints", "kept"),
        node(run_id, "G", "A", 2, "constraints", "kept"),
    ])
    values = {"S": (4, 1.0), "K": (3, 1.0), "A": (6, 2.0), "B": (None, 1.5), "C": (5, 1.2), "D": (None, None),
              "H": (3, 1.0), "E": (8, 3.0), "F": (7, 2.5), "G": (6, 2.0)}
    scores = []
    for nid, (difficulty, cx) in values.items():
        if difficulty is not None:
            scores.append(Score(nid, "difficulty", difficulty, "m"))
        if cx is not None:
            scores.append(Score(nid, "cx_index", cx, "heuristic"))
    store.add_scores(scores)
    calls = [("A", 100, 0.01, False), ("A", 100, 0.01, False), ("B", 50, 0.005, False), ("E", 100, 0.01, False),
             ("E", 999, 0.0, True), ("F", 100, 0.01, False), ("G", 100, 0.01, False), ("C", 40, 0.004, False),
             ("D", 10, 0.0, False), ("H", 70, 0.007, False), (None, 500, 0.05, False)]
    for nid, tokens, cost, cached in calls:
        store.add_call(LLMCall(purpose="evolve", model="m", prompt_tokens=tokens - 10, completion_tokens=10,
                               cost_usd=cost, cached=cached, run_id=run_id, node_id=nid))
    yield store, run_id
    store.close()


def frames(store, run_id):
    nodes = analysis.nodes_frame(store, run_id)
    return nodes, analysis.calls_frame(store, run_id, nodes)


def row(frame, **where):
    hit = frame
    for k, v in where.items():
        hit = hit[hit[k] == v]
    assert len(hit) == 1, where
    return hit.iloc[0]


def test_per_operation_counts_rules_changes_and_spend_match_hand_computed_values(crafted):
    store, run_id = crafted
    stats = opstats.operation_stats(*frames(store, run_id), by=())
    assert list(stats["operation"]) == ["constraints", "deepen", "breadth"]  # the paper's order
    c = row(stats, operation="constraints")
    assert (c["tried"], c["kept"], c["eliminated"], c["failed"]) == (5, 4, 1, 0)
    assert c["kept_share"] == pytest.approx(0.8)
    assert c["rule_prompt_leak"] == 1 and c["rule_llm_error"] == 0
    # difficulty changes A +2, E +2, F +1, G 0 (B has no score): mean 1.25 over 4, on the -9..9 scale
    assert c["difficulty_delta_mean"] == pytest.approx(1.25) and c["difficulty_delta_n"] == 4
    assert c["difficulty_delta_lo"] < 1.25 < c["difficulty_delta_hi"]
    assert (c["difficulty_delta_lo"], c["difficulty_delta_hi"]) == pytest.approx(
        analysis.mean_ci([2, 2, 1, 0], 0.95, analysis.delta_scale("difficulty"))[1:3])
    # complexity changes 1.0, 0.5, 1.0, 0.5, 0.0: mean 0.6, sd 0.41833, t(4) 2.776445 -> 0.6 +- 0.51942
    assert c["cx_index_delta_mean"] == pytest.approx(0.6) and c["cx_index_delta_n"] == 5
    assert c["cx_index_delta_lo"] == pytest.approx(0.08058, abs=1e-4)
    assert c["cx_index_delta_hi"] == pytest.approx(1.11942, abs=1e-4)
    # spend: 6 uncached calls (the cached one is free), 550 tokens, $0.055 over 4 kept children
    assert (c["calls"], c["tokens"]) == (6, 550) and c["cost_usd"] == pytest.approx(0.055)
    assert c["calls_per_kept"] == pytest.approx(1.5) and c["tokens_per_kept"] == pytest.approx(137.5)
    assert c["cost_per_kept"] == pytest.approx(0.01375)
    d = row(stats, operation="deepen")
    assert (d["tried"], d["kept"], d["failed"], d["rule_llm_error"]) == (2, 1, 1, 1)
    assert d["difficulty_delta_mean"] == 1.0 and d["difficulty_delta_n"] == 1 and math.isnan(d["difficulty_delta_lo"])
    assert d["calls"] == 2 and d["calls_per_kept"] == 2.0 and d["tokens_per_kept"] == 50


def test_splits_by_round_language_and_skill(crafted):
    store, run_id = crafted
    nodes, calls = frames(store, run_id)
    by_round = opstats.operation_stats(nodes, calls, by=["round"])
    r1, r2 = row(by_round, operation="constraints", round=1), row(by_round, operation="constraints", round=2)
    assert (r1["tried"], r1["kept"], r1["rule_prompt_leak"]) == (2, 1, 1)
    assert (r2["tried"], r2["kept"], r2["difficulty_delta_mean"]) == (3, 3, pytest.approx(1.0))
    assert r1["cost_per_kept"] == pytest.approx(0.025)
    by_lang = opstats.operation_stats(nodes, calls, by=["language"])
    ko = row(by_lang, operation="breadth", language="ko")
    assert (ko["tried"], ko["kept"], ko["difficulty_delta_mean"], ko["tokens_per_kept"]) == (1, 1, 0.0, 70)
    assert set(by_lang["language"]) == {"en", "ko"}
    by_skill = opstats.operation_stats(nodes, calls, by=["skill", "language"])
    assert row(by_skill, operation="breadth", skill="수학", language="ko")["kept"] == 1
    assert row(by_skill, operation="constraints", skill="(none)", language="en")["tried"] == 5
    with pytest.raises(ValueError, match="Cannot split operations by 'status'"):
        opstats.operation_stats(nodes, calls, by=["status"])


def test_empty_frames_give_empty_tables_and_figures():
    empty = opstats.operation_stats(pd.DataFrame(), None)
    assert empty.empty and "kept_share" in empty
    assert opstats.format_table(empty) == "  no evolved children yet"
    assert viz.is_empty_figure(viz.operation_stats_figure(empty))
    assert viz.is_empty_figure(viz.adaptive_weights_figure(opstats.weights_frame([])))


def test_the_figure_draws_each_operation_with_its_numbers(crafted):
    store, run_id = crafted
    stats = opstats.operation_stats(*frames(store, run_id), by=["round"])
    fig = viz.operation_stats_figure(stats, "round")
    kept = [t for t in fig.data if t.xaxis == "x" and t.name == "constraints"][0]
    assert list(kept.x) == ["1", "2"] and list(kept.y) == pytest.approx([0.5, 1.0])
    change = [t for t in fig.data if t.xaxis == "x2" and t.name == "constraints"][0]
    assert list(change.y) == pytest.approx([2.0, 1.0])
    bars = viz.operation_stats_figure(opstats.operation_stats(*frames(store, run_id), by=()), None)
    assert {t.name for t in bars.data} == {"constraints", "deepen", "breadth"}


def test_runs_by_operation_prints_the_table(crafted, capsys):
    store, run_id = crafted
    store.close()
    assert main(["runs", "--db", store.path, "--by-operation", "--run", run_id, "--split", "language"]) == 0
    out = capsys.readouterr().out
    assert "what each operation did" in out and "by operation and language:" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("constraints"))
    assert "80%" in line and "+1.25" in line and "+0.60 [+0.08, +1.12]" in line and "1.5" in line
    assert any(x.split()[:2] == ["breadth", "ko"] for x in out.splitlines())
    assert main(["runs", "--db", store.path, "--by-operation", "--run", "nope"]) == 2
    assert main(["runs", "--db", store.path, "--run", run_id]) == 0
    assert run_id in capsys.readouterr().out


def test_weights_frame_and_final_posterior_from_decisions():
    prior = {"constraints": [1.0, 1.0], "deepen": [1.0, 1.0]}
    decisions = [
        {"seq": 0, "created_at": 1.0, "language": "en", "operation": "constraints", "posterior": prior,
         "draws": {"constraints": 0.7, "deepen": 0.2}, "reward": 1.0},
        {"seq": 1, "created_at": 2.0, "language": "en", "operation": "deepen",
         "posterior": {"constraints": [2.0, 1.0], "deepen": [1.0, 1.0]}, "draws": {"constraints": 0.3, "deepen": 0.6},
         "reward": 0.0},
        {"seq": 2, "created_at": 3.0, "language": "ko", "operation": "deepen", "posterior": prior,
         "draws": {"constraints": 0.1, "deepen": 0.9}, "reward": None},
    ]
    w = opstats.weights_frame(decisions)
    assert len(w) == 6
    assert row(w, seq=1, operation="constraints")["mean"] == pytest.approx(2 / 3)
    assert bool(row(w, seq=1, operation="deepen")["chosen"]) and math.isnan(row(w, seq=2, operation="deepen")["reward"])
    final = opstats.final_weights(decisions)
    assert row(final, language="en", operation="constraints")[["alpha", "beta", "chosen"]].tolist() == [2.0, 1.0, 1]
    assert row(final, language="en", operation="deepen")[["alpha", "beta", "chosen"]].tolist() == [1.0, 2.0, 1]
    assert row(final, language="ko", operation="deepen")[["alpha", "beta", "chosen"]].tolist() == [1.0, 1.0, 1]
    fig = viz.adaptive_weights_figure(w)
    assert [a.text for a in fig.layout.annotations][:2] == ["en", "ko"]
