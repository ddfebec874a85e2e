"""Lineage: one seed's tree of a run; click a node to see everything about it."""
from __future__ import annotations

import streamlit as st

from evolab.analysis import viz
from evolab.app import support as app_support
from ui import common as app_common

db = app_common.store()
st.title("Lineage")
st.caption("Each seed's tree by round: colour = operation, symbol = status (◆ seed, ● kept, ✕ eliminated, "
           "■ failed). Click a node to see its instruction, response, verdicts and scores.")

run = app_common.pick_run(db, key="lineage_run")
if run is None:
    app_common.no_runs(db)
    st.stop()
run_id = run["id"]
nodes = app_common.nodes_frame(db, run_id)
roots = app_support.roots_of(nodes)
if not roots:
    st.info("This run has no nodes yet: start it on the Runs page.", icon=":material/arrow_forward:")
    st.page_link(app_common.PAGES["runs"], label="Runs", icon=":material/play_circle:")
    st.stop()

root_ids = [r["id"] for r in roots]
by_root = {r["id"]: r for r in roots}
clicked = app_common.new_chart_selection("lineage_tree")
if "lineage_seed" in st.session_state and st.session_state["lineage_seed"] not in by_root:
    del st.session_state["lineage_seed"]
wanted_node = clicked or app_common.current("node")
if "lineage_seed" not in st.session_state:
    match = nodes.loc[nodes["id"] == wanted_node, "root_id"]
    remembered = app_common.current("seed")
    st.session_state["lineage_seed"] = (match.iloc[0] if len(match) else
                                        remembered if remembered in by_root else root_ids[0])


def seed_label(rid: str) -> str:
    r = by_root[rid]
    text = " ".join(str(r["instruction"]).split())
    return f"{text[:80]}{'…' if len(text) > 80 else ''} ({r['nodes']} nodes)"


seed_id = st.selectbox("Seed", root_ids, key="lineage_seed", format_func=seed_label)
app_common.remember("seed", seed_id)
tree = app_support.lineage_nodes(nodes, seed_id)

left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(viz.lineage_figure(tree, title=""), key="lineage_tree", on_select="rerun",
                    selection_mode="points")
    counts = tree["status"].value_counts().to_dict()
    st.caption(" · ".join(f"{k}: {v}" for k, v in counts.items()))
with right:
    tree_ids = list(tree["id"])
    node_id = clicked if clicked in tree_ids else app_common.current("node")
    if node_id not in tree_ids:
        node_id = seed_id
    app_common.remember("node", node_id)
    detail = app_support.node_detail(db, node_id)
    st.subheader("Selected node")
    if detail.parent is not None and st.button("Go to its parent", key="lineage_parent"):
        app_common.remember("node", detail.parent.id)
        st.rerun()
    app_common.show_node(detail)
    if detail.children:
        st.markdown(f"**Children** ({len(detail.children)})")
        for child in detail.children:
            if st.button(app_common.md(app_support.node_label(child)), key=f"lineage_child_{child.id}", width="stretch"):
                app_common.remember("node", child.id)
                st.rerun()
