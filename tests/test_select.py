"""Deita selection (evolab/analysis/select.py, `python -m evolab select`) on a stub run written straight into a
store: tight clusters of nodes with known scores and vectors from a scripted embedder, so the right choice can be
counted by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evolab.analysis import select as sel
from evolab.cli.main import main
from evolab.schema import Node, RunConfig, Score, Seed
from evolab.store import Store

DIM = 16
THRESHOLD = 0.9


class ScriptedEmbedder:
    """Vectors by text: each node's instruction names its cluster; members sit close to the cluster's axis."""

    name = "scripted-embedder"

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def encode(self, texts):
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def member_vector(cluster: int, k: int, spread: float = 0.05) -> np.ndarray:
    v = np.zeros(DIM)
    v[cluster] = 1.0
    v[(cluster + 1 + k) % DIM] = spread * (k + 1)  # close to the axis: cosine > 0.98 with its cluster mates
    return v / np.linalg.norm(v)


def build_run(store: Store, clusters: dict[int, list[tuple[float, float]]], *, skills=None, lineage_of=None):
    """One run; cluster c's member k has difficulty/quality from `clusters[c][k]`, its own text and vector.
    Members are children of seed `lineage_of(c, k)` (default: one lineage per cluster)."""
    n_lineages = max(len(clusters), 1) if lineage_of is None else 6
    seeds = [Seed(f"seed {i}", skill=(skills or {}).get(i, "writing")) for i in range(n_lineages)]
    run_id = store.create_run(RunConfig(model="fake", base_url="http://fake"), seeds)
    vectors, nodes, scores = {}, [], []
    for i in range(n_lineages):
        sid = f"{run_id}-s{i}"
        nodes.append(Node(sid, run_id, None, sid, 0, "seed", f"seed {i}", response="answer", status="seed",
                          skill=seeds[i].skill))
        vectors[f"seed {i}"] = member_vector((i + 7) % DIM, 0)
    for c, members in clusters.items():
        for k, (difficulty, quality) in enumerate(members):
            lineage = c if lineage_of is None else lineage_of(c, k)
            nid, text = f"{run_id}-c{c}-{k}", f"cluster {c} member {k}"
            nodes.append(Node(nid, run_id, f"{run_id}-s{lineage}", f"{run_id}-s{lineage}", 1 + k % 3, "deepen", text,
                              response=f"answer to {text}", status="kept", skill=seeds[lineage].skill))
            scores += [Score(nid, "difficulty", difficulty, "test"), Score(nid, "quality", quality, "test")]
            vectors[text] = member_vector(c, k)
    store.save_nodes(nodes)
    store.add_scores(scores)
    store.flush()
    return run_id, ScriptedEmbedder(vectors)


@pytest.fixture
def clustered(store):
    # three tight clusters; the best of each (by difficulty x quality) is member 2, 0 and 3
    clusters = {0: [(5, 4), (6, 4), (8, 4.5), (7, 3)],
                1: [(9, 5), (9, 4), (3, 5)],
                2: [(2, 2), (4, 3), (5, 3), (6, 4), (1, 5)]}
    run_id, embedder = build_run(store, clusters)
    return store, run_id, embedder


def test_it_takes_the_top_scored_node_of_each_tight_cluster_and_never_two_too_close(clustered):
    store, run_id, embedder = clustered
    chosen = sel.select(store, run_id, sel.SelectionParams(n=10, threshold=THRESHOLD), embedder=embedder)
    assert sorted(chosen.chosen_ids) == sorted([f"{run_id}-c0-2", f"{run_id}-c1-0", f"{run_id}-c2-3"])
    assert list(chosen.chosen["id"]) == [f"{run_id}-c1-0", f"{run_id}-c0-2", f"{run_id}-c2-3"]  # best first
    vectors = embedder.encode(list(chosen.chosen["instruction"]))
    sims = vectors @ vectors.T
    assert (sims[~np.eye(len(sims), dtype=bool)] < THRESHOLD).all()
    skipped = chosen.frame[~chosen.frame["chosen"]]
    assert set(skipped["reason"]) == {"near_duplicate"}
    # each skip names the chosen node of its own cluster, at a cosine over the threshold
    for row in skipped.itertuples():
        assert row.other_id.split("-c")[1].split("-")[0] == row.id.split("-c")[1].split("-")[0]
        assert row.similarity >= THRESHOLD


def test_n_stops_the_selection_and_the_rest_is_not_reached(clustered):
    store, run_id, embedder = clustered
    chosen = sel.select(store, run_id, sel.SelectionParams(n=2, threshold=THRESHOLD), embedder=embedder)
    assert chosen.chosen_ids == [f"{run_id}-c1-0", f"{run_id}-c0-2"]
    assert "not_reached" in set(chosen.frame["reason"])


def test_the_score_is_switchable(clustered):
    store, run_id, embedder = clustered
    by_quality = sel.select(store, run_id, sel.SelectionParams(n=3, score=("quality",), threshold=THRESHOLD),
                            embedder=embedder)
    # cluster 2's best quality is member 4 (5.0); cluster 1 ties at 5 between members 0 and 2: the id decides
    assert f"{run_id}-c2-4" in by_quality.chosen_ids and f"{run_id}-c1-0" in by_quality.chosen_ids
    with pytest.raises(sel.SelectionError, match="no score named nonsense"):
        sel.select(store, run_id, sel.SelectionParams(n=3, score=("nonsense",)), embedder=embedder)


def test_the_default_threshold_is_the_embedders_calibration(clustered):
    store, run_id, embedder = clustered
    chosen = sel.select(store, run_id, sel.SelectionParams(n=10), embedder=embedder)
    assert chosen.threshold == pytest.approx(0.9)  # an uncalibrated model: the global fallback
    from evolab.embeddings import thresholds

    thresholds.save_to_store(store, embedder.name, {"near_duplicate": 0.5, "novelty": 0.6, "run_map": 0.995})
    loose = sel.select(store, run_id, sel.SelectionParams(n=20), embedder=embedder)
    assert loose.threshold == pytest.approx(0.995) and len(loose.chosen) > 3  # cluster mates are under 0.995
    strict = sel.select(store, run_id, sel.SelectionParams(n=20, threshold_kind="novelty"), embedder=embedder)
    assert strict.threshold == pytest.approx(0.6) and len(strict.chosen) == 3


@pytest.mark.parametrize("cap_by", ["lineage", "skill"])
def test_the_cap_per_lineage_or_skill_holds(store, cap_by):
    # 12 nodes in 12 far-apart directions (nothing too close), spread over 6 lineages of 3 skills
    clusters = {c: [(10 - c % 4, 5 - c % 3)] for c in range(12)}
    skills = {i: ["writing", "math", "coding"][i % 3] for i in range(6)}
    run_id, embedder = build_run(store, clusters, skills=skills, lineage_of=lambda c, k: c % 6)
    chosen = sel.select(store, run_id, sel.SelectionParams(n=12, threshold=THRESHOLD, cap_by=cap_by, cap=1),
                        embedder=embedder)
    column = sel.CAP_BY[cap_by]
    assert chosen.chosen[column].value_counts().max() == 1
    assert len(chosen.chosen) == (6 if cap_by == "lineage" else 3)
    assert set(chosen.frame.loc[~chosen.frame["chosen"], "reason"]) == {"cap"}
    # what the cap kept is the best of each group
    for group, rows in chosen.frame.groupby(column):
        assert rows.loc[rows["chosen"], "score"].iloc[0] == rows["score"].max()


def test_filters_reviews_and_missing_scores_are_skipped_with_their_reason(clustered):
    store, run_id, embedder = clustered
    store.add_review({"node_id": f"{run_id}-c1-0", "run_id": run_id, "verdict": "discard"})
    store.add_scores([Score(f"{run_id}-c2-3", "quality", None, "test")])  # an unreadable score
    chosen = sel.select(store, run_id, sel.SelectionParams(n=10, threshold=THRESHOLD, min_scores={"difficulty": 3}),
                        embedder=embedder)
    reasons = dict(zip(chosen.frame["id"], chosen.frame["reason"]))
    assert reasons[f"{run_id}-c1-0"] == "filtered" and reasons[f"{run_id}-c2-3"] == "no_score"
    assert reasons[f"{run_id}-c2-0"] == "filtered"  # difficulty 2 < 3
    assert f"{run_id}-c1-1" in chosen.chosen_ids  # the next best of cluster 1 takes the discarded one's place
    detail = dict(zip(chosen.frame["id"], chosen.frame["reason_detail"]))
    assert detail[f"{run_id}-c1-0"] == "review: discard" and detail[f"{run_id}-c2-0"] == "difficulty under 3"


def test_the_record_in_the_store_is_complete(clustered, tmp_path):
    store, run_id, embedder = clustered
    params = sel.SelectionParams(n=10, threshold=THRESHOLD, cap_by="skill", cap=2)
    chosen = sel.select(store, run_id, params, embedder=embedder)
    out = tmp_path / "train.jsonl"
    assert sel.write_selection(store, chosen, "openai", out) == 2
    sid = sel.record_selection(store, chosen, out_path=str(out), out_format="openai")
    [row] = store.selections(run_id)
    assert row["id"] == sid and row["run_ids"] == [run_id] and row["params"] == params.to_dict()
    assert row["embedder"] == embedder.name and row["threshold"] == THRESHOLD
    assert (row["n_requested"], row["n_chosen"], row["out_format"]) == (10, 2, "openai")
    items = store.selection_items(sid)
    kept = [n.id for n in store.nodes(run_id, "kept")]
    assert sorted(i["node_id"] for i in items) == sorted(kept)  # every candidate, chosen or not
    assert [i["node_id"] for i in items if i["chosen"]] == chosen.chosen_ids
    for i in items:
        if i["chosen"]:
            assert i["reason"] is None and i["rank"] is not None and i["score"] is not None
        else:
            assert i["reason"].split(":")[0] in sel.REASONS
            if i["reason"] == "near_duplicate":
                assert i["other_id"] in chosen.chosen_ids and i["similarity"] >= THRESHOLD
    lines = out.read_text().splitlines()
    assert [json.loads(x)["messages"][0]["content"] for x in lines] == list(chosen.chosen["instruction"])
    assert sel.selection_marks(store, run_id) == {i["node_id"]: i["chosen"] for i in items}


def test_the_outcome_table_and_score_distribution(clustered):
    store, run_id, embedder = clustered
    chosen = sel.select(store, run_id, sel.SelectionParams(n=10, threshold=THRESHOLD), embedder=embedder)
    table = sel.outcome_table(chosen.frame, "round").set_index("round")
    assert table["candidates"].sum() == 12 and table["taken"].sum() == 3
    assert (table["candidates"] == table[["taken", *sel.REASONS]].sum(axis=1)).all()
    dist = sel.score_distribution(chosen.frame)
    assert (dist["set"] == "chosen").sum() == 3 and (dist["set"] == "all candidates").sum() == 12


def test_greedy_matches_a_plain_reference_on_random_vectors():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(1300, 8)).astype(np.float32)  # more than one block
    scores = rng.random(1300)
    out = sel.deita_greedy(scores, vectors, 200, 0.8)
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    taken = []
    for i in np.argsort(-scores, kind="stable"):
        if len(taken) == 200:
            break
        if not taken or (v[taken] @ v[i]).max() < 0.8:
            taken.append(i)
    assert sorted(np.nonzero(out["chosen"])[0]) == sorted(taken)


def test_the_rouge_option_skips_text_near_duplicates():
    texts = ["Write a poem about the sea at night", "Write a poem about the sea at night in ten lines",
             "Explain how bond funds react to rising interest rates"]
    vectors = np.eye(3, dtype=np.float32)  # far apart in embedding space
    out = sel.deita_greedy(np.array([3.0, 2.0, 1.0]), vectors, 3, 0.9, texts=texts)
    assert list(out["chosen"]) == [True, False, True] and out["reason"][1] == "rouge_duplicate"


def test_the_cli_selects_writes_and_records(clustered, tmp_path, monkeypatch, capsys):
    store, run_id, embedder = clustered
    monkeypatch.setattr(sel, "map_embedder", lambda nodes: embedder)
    out = tmp_path / "train.json"
    code = main(["select", "--db", store.path, "--run", run_id, "--n", "5", "--out", str(out),
                 "--threshold", "0.9", "--format", "alpaca"])
    assert code == 0, capsys.readouterr().err
    assert len(json.loads(out.read_text())) == 3
    assert "chose 3 of 5" in capsys.readouterr().out
    assert store.selections(run_id)[0]["out_path"] == str(out)


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "--n must be at least 1"),
    (["--n", "3", "--cap", "2"], "--cap-by and --cap go together"),
    (["--n", "3", "--score", "nonsense"], "no score named nonsense"),
    (["--n", "3", "--checked", "maybe"], "maybe is not a check status"),
    (["--n", "3", "--run", "nope"], "No run 'nope'"),
    (["--n", "3", "--min-score", "quality"], "use METRIC=NUMBER"),
])
def test_bad_input_is_exit_2_naming_the_argument_and_nothing_is_written(clustered, tmp_path, monkeypatch, capsys,
                                                                         argv, message):
    store, run_id, embedder = clustered
    monkeypatch.setattr(sel, "map_embedder", lambda nodes: embedder)
    out = tmp_path / "train.json"
    run = [] if "--run" in argv else ["--run", run_id]
    assert main(["select", "--db", store.path, *run, "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and store.selections() == []


def test_the_dataset_card_says_how_the_set_was_chosen(clustered):
    from evolab.export import card

    store, run_id, embedder = clustered
    before = card.card_body(store, run_id, {"alpaca": "data/alpaca.json"}, {"alpaca": 3}, None)
    assert "No selection was made" in before
    chosen = sel.select(store, run_id, sel.SelectionParams(n=10, threshold=THRESHOLD, cap_by="skill", cap=2),
                        embedder=embedder)
    sel.record_selection(store, chosen)
    items = store.selection_items(chosen.selection_id)
    near = sum(1 for i in items if not i["chosen"] and i["reason"].startswith("near_duplicate"))
    after = card.card_body(store, run_id, {"alpaca": "data/alpaca.json"}, {"alpaca": 2}, None)
    section = after.split("## Selection", 1)[1].split("\n## ", 1)[0]
    assert f"chose {len(chosen.chosen_ids)} of the 10 asked for" in section and "0.9000" in section
    assert "difficulty*quality" in section and "at most 2 per skill" in section
    if near:
        assert f"{card.plain('near_duplicate')} {near}" in section  # as Markdown escapes it
