import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from analysis_fixtures import build_run

from evolab.analysis import frames as analysis
from evolab.analysis import viz
from evolab.engine.operations import operation_names


@pytest.fixture
def sample(store):
    return build_run(store, rounds=2)


@pytest.fixture
def nodes(store, sample):
    return analysis.nodes_frame(store, sample.run_id)


def marker_traces(fig):
    return [t for t in fig.data if t.mode == "markers" and t.customdata is not None]


def test_lineage_traces_carry_ids_colours_and_symbols(nodes):
    fig = viz.lineage_figure(nodes)
    traces = marker_traces(fig)
    ids = [i for t in traces for i in t.customdata]
    assert sorted(ids) == sorted(nodes["id"])  # every node once
    by_id = nodes.set_index("id")
    for t in traces:
        assert t.marker.color == viz.operation_color(t.name)
        assert {by_id.loc[i, "operation"] for i in t.customdata} == {t.name}
        for i, symbol, x in zip(t.customdata, t.marker.symbol, t.x):
            assert symbol == viz.STATUS_SYMBOLS[by_id.loc[i, "status"]]
            assert x == by_id.loc[i, "round"]
    assert all(isinstance(t, go.Scatter) for t in fig.data)  # small: SVG
    status_legend = [t.name for t in fig.data if t.legendgroup == "status"]
    assert set(status_legend) == set(nodes["status"])


def test_lineage_edges_join_parents_and_children(nodes):
    fig = viz.lineage_figure(nodes)
    edges = next(t for t in fig.data if t.name == "edges")
    n_edges = nodes["parent_id"].isin(nodes["id"]).sum()
    assert len(edges.x) == 3 * n_edges
    positions = {}
    for t in marker_traces(fig):
        positions.update({i: (x, y) for i, x, y in zip(t.customdata, t.x, t.y)})
    child = nodes[nodes["parent_id"].notna()].iloc[0]
    px, py = positions[child["parent_id"]]
    cx, cy = positions[child["id"]]
    segments = {(edges.x[k], edges.y[k], edges.x[k + 1], edges.y[k + 1]) for k in range(0, len(edges.x), 3)}
    assert (px, py, cx, cy) in segments


def test_lineage_layout_keeps_children_near_parents(nodes):
    y = viz.lineage_layout(nodes)
    assert set(y.index) == set(nodes["id"])
    for parent_id, kids in nodes[nodes["parent_id"].notna()].groupby("parent_id")["id"]:
        kid_y = y[list(kids)]
        assert kid_y.min() <= y[parent_id] <= kid_y.max()
    # each seed's tree has its own band
    bands = nodes.assign(y=nodes["id"].map(y)).groupby("root_id")["y"].agg(["min", "max"]).sort_values("min")
    assert (bands["min"].iloc[1:].to_numpy() > bands["max"].iloc[:-1].to_numpy()).all()


def test_hover_wraps_and_shows_korean(nodes):
    fig = viz.lineage_figure(nodes)
    texts = [s for t in marker_traces(fig) for s in t.text]
    korean = [s for s in texts if "서울의 대중교통" in s]
    assert korean, "Korean instruction missing from hover"
    assert "<br>" in max(texts, key=len)
    assert "서울의 대중교통" in fig.to_json() or "\\uc11c\\uc6b8" in fig.to_json()
    wrapped = viz.wrap_hover("word " * 40 + "<script>")
    assert all(len(line) <= 60 for line in wrapped.split("<br>")) and "&lt;script&gt;" in wrapped
    assert viz.wrap_hover("가" * 130).count("<br>") == 2


def big_nodes(n_seeds=300, children=3, rounds=3):
    rows, t = [], 0.0
    ops = list(operation_names())
    for s in range(n_seeds):
        sid = f"s{s}"
        rows.append(dict(id=sid, parent_id=None, root_id=sid, round=0, operation="seed", status="seed",
                         instruction=f"Seed {s}", input="", rule=None, created_at=t))
        frontier = [sid]
        for r in range(1, rounds + 1):
            nxt = []
            for p in frontier[:2]:
                for c in range(children):
                    t += 1
                    nid = f"{p}.{c}"
                    rows.append(dict(id=nid, parent_id=p, root_id=sid, round=r, operation=ops[(s + c) % 6],
                                     status="kept" if c else "eliminated", rule=None if c else "refusal",
                                     instruction=f"Child {nid}", input="", created_at=t))
                    nxt.append(nid)
            frontier = nxt
    return pd.DataFrame(rows)


def test_lineage_uses_webgl_for_many_nodes():
    df = big_nodes()
    assert len(df) > viz.WEBGL_THRESHOLD
    fig = viz.lineage_figure(df)
    assert fig.data and all(isinstance(t, go.Scattergl) for t in fig.data)
    assert sum(len(t.customdata) for t in marker_traces(fig)) == len(df)


def test_drift_figure_error_bars(nodes):
    frame = analysis.round_operation_frame(nodes, include_all=True)
    fig = viz.drift_figure(frame, "difficulty")
    names = [t.name for t in fig.data]
    assert "all" in names and set(names) <= set(frame["operation"])
    overall = next(t for t in fig.data if t.name == "all")
    rows = frame[(frame["operation"] == "all")].sort_values("round")
    assert list(overall.y) == pytest.approx(list(rows["difficulty_mean"]))
    assert list(overall.error_y.array) == pytest.approx(list((rows["difficulty_hi"] - rows["difficulty_mean"]).fillna(0)))
    assert list(overall.error_y.arrayminus) == pytest.approx(list((rows["difficulty_mean"] - rows["difficulty_lo"]).fillna(0)))
    assert overall.line.width == 3


def test_eliminations_figure_stacks_counts(nodes):
    frame = analysis.eliminations_frame(nodes, "round")
    fig = viz.eliminations_figure(frame, "round")
    assert fig.layout.barmode == "stack"
    assert {t.name for t in fig.data} == set(frame["rule"])
    assert sum(sum(t.y) for t in fig.data) == frame["count"].sum()
    for t in fig.data:
        assert t.marker.color == viz.rule_color(t.name)
    by_op = viz.eliminations_figure(analysis.eliminations_frame(nodes, "operation"))
    assert set(by_op.data[0].x) <= set(nodes["operation"])


def map_frame(nodes):
    rng = np.random.default_rng(0)
    df = nodes.copy()
    df["x"], df["y"] = rng.normal(size=len(df)), rng.normal(size=len(df))
    df["near_duplicate"] = [i % 4 == 0 for i in range(len(df))]
    df["max_cosine"], df["nearest_id"] = 0.95, df["id"].iloc[0]
    return df


@pytest.mark.parametrize("color_by", ["round", "operation", "status"])
def test_umap_figure_colours_and_duplicates(nodes, color_by):
    df = map_frame(nodes)
    fig = viz.umap_figure(df, color_by)
    dup = [t for t in fig.data if t.name == "near-duplicate"]
    groups = [t for t in fig.data if t.name != "near-duplicate"]
    assert len(groups) == df[color_by].nunique()
    assert sorted(i for t in groups for i in t.customdata) == sorted(df["id"])
    assert sorted(dup[0].customdata) == sorted(df.loc[df["near_duplicate"], "id"])
    assert dup[0].hoverinfo == "skip"  # the point underneath says it is a near-duplicate
    dup_id = dup[0].customdata[0]
    host = next(t for t in groups if dup_id in t.customdata)
    assert "near-duplicate of" in host.text[list(host.customdata).index(dup_id)]
    if color_by == "operation":
        for t in groups:
            assert t.marker.color == viz.operation_color(t.name)
    with pytest.raises(ValueError, match="Cannot colour"):
        viz.umap_figure(df, "nope")


def test_diversity_and_cost_figures(store, sample, nodes):
    div = pd.DataFrame({"round": [0, 1, 2], "n": [4, 6, 7], "mean_pairwise_distance": [0.8, 0.7, 0.6],
                        "mean_nn_distance": [0.5, 0.3, 0.2], "near_duplicate_share": [0.0, 0.2, 0.4],
                        "clusters": [4, 4, 3], "clusters_sampled": False})
    fig = viz.diversity_figure(div)
    assert list(next(t for t in fig.data if t.name == "clusters").y) == [4, 4, 3]
    assert list(next(t for t in fig.data if t.name == "near-duplicate share").y) == [0.0, 0.2, 0.4]
    two = pd.concat([div.assign(run_id="a"), div.assign(run_id="b")])
    assert len(viz.diversity_figure(two).data) == 8

    cost = analysis.cost_frame(analysis.calls_frame(store, sample.run_id, nodes))
    fig = viz.cost_figure(cost)
    token_bars = [t for t in fig.data if t.yaxis == "y"]
    cost_bars = [t for t in fig.data if t.yaxis == "y2"]
    assert sum(sum(t.y) for t in token_bars) == cost["tokens"].sum()
    assert sum(sum(t.y) for t in cost_bars) == pytest.approx(cost["cost_usd"].sum())
    assert "no node" in token_bars[0].x
    assert {t.name for t in token_bars} == set(cost["purpose"])


def test_every_figure_says_when_there_is_no_data():
    nodes = analysis._empty_nodes_frame()
    figures = [
        viz.lineage_figure(nodes),
        viz.drift_figure(analysis.round_operation_frame(nodes, include_all=True), "difficulty"),
        viz.deltas_figure(analysis.deltas_frame(nodes)),
        viz.eliminations_figure(analysis.eliminations_frame(nodes)),
        viz.umap_figure(pd.DataFrame()),
        viz.diversity_figure(pd.DataFrame()),
        viz.cost_figure(analysis.cost_frame(pd.DataFrame())),
    ]
    for fig in figures:
        assert viz.is_empty_figure(fig)
        assert "no" in fig.layout.annotations[0].text.lower()


def test_deltas_figure(nodes):
    deltas = analysis.deltas_frame(nodes)
    fig = viz.deltas_figure(deltas)
    assert len(fig.data) == deltas["metric"].nunique()
    first = fig.data[0]
    d = deltas[deltas["metric"] == "difficulty"].set_index("operation")
    assert list(first.y) == pytest.approx([d.loc[o, "mean"] for o in first.x])
