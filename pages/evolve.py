"""Step through: evolve one node at a time and see everything the step did; the tree grows as you go."""
from __future__ import annotations

import streamlit as st

from evolab.analysis import viz
from evolab.app import support as app_support
from evolab.engine import pipeline
from evolab.engine.operations import operation_names
from evolab.llm.base import LLMError
from evolab.schema import ELIMINATED, FAILED, SEED
from ui import common as app_common

db = app_common.store()
settings = app_common.settings()
st.title("Step through")
st.caption("Pick a seed or any node, choose an operation (or let it sample), evolve it once, and see the exact "
           "prompt, the raw output, the parsed instruction, the response, each rule's verdict and the scores. "
           "Every step is stored: a reload loses nothing.")

sessions = [r for r in db.list_runs() if r["status"] == "interactive"]

with st.expander("Start a new step-through session", expanded=not sessions):
    table_seeds = st.session_state.get("seeds")
    sources = app_support.seed_sources(db, table_seeds)
    app_common.valid_choice("evolve_source", sources)
    source = st.selectbox("Seeds", sources, key="evolve_source",
                          format_func=lambda s: app_support.seed_source_label(s, table_seeds))
    name = st.text_input("Session name", key="evolve_session_name", placeholder="step-through")
    st.caption(f"Model: **{app_common.md(settings.endpoint_label)}** (change it in the sidebar).")
    if st.button("Start a session", key="evolve_start", type="primary"):
        problems = settings.problems()
        if problems:
            for p in problems:
                st.error(app_common.md(p))
        else:
            seeds = app_support.load_seed_source(db, source, table_seeds)
            run_id, roots = pipeline.start_interactive(db, seeds, settings.run_config(),
                                                       name=name.strip() or "step-through")
            app_common.remember("run", run_id)
            app_common.remember("node", roots[0].id)
            st.session_state.pop("evolve_run", None)
            st.session_state.pop("evolve_node", None)
            st.rerun()

if not sessions:
    st.info("No step-through session yet: choose seeds above and press **Start a session**.",
            icon=":material/arrow_upward:")
    st.stop()

run = app_common.pick_run(db, key="evolve_run", label="Session", runs=sessions)
run_id = run["id"]
nodes = db.nodes(run_id)
by_id = {n.id: n for n in nodes}
ids = [n.id for n in nodes]

# A click on the tree (handled before the node selectbox is drawn, so it can move it).
clicked = app_common.new_chart_selection("evolve_tree")
if clicked in by_id:
    app_common.select_widget_value("evolve_node", clicked)
app_common.apply_pending("evolve_node", ids)
if "evolve_node" in st.session_state and st.session_state["evolve_node"] not in by_id:
    del st.session_state["evolve_node"]
wanted = app_common.current("node")
if "evolve_node" not in st.session_state and wanted in by_id:
    st.session_state["evolve_node"] = wanted

left, right = st.columns([3, 2], gap="large")
with left:
    node_id = st.selectbox("Node", ids, key="evolve_node",
                           format_func=lambda i: app_support.node_label(by_id[i], status=False),
                           help="Seeds are round 0. Clicking a node in the tree selects it too.")
    app_common.remember("node", node_id)
    detail = app_support.node_detail(db, node_id)
    node = detail.node

    with st.container(border=True):
        st.markdown("**Evolve this node**")
        if node.status in (ELIMINATED, FAILED):  # after a step the selector is on the new child, often eliminated
            st.warning(f"This node was {node.status}"
                       + (f" by {app_common.md_code(node.rule)}" if node.rule else "")
                       + ": a run never evolves it further. Evolve goes on from it anyway; **Back to the parent** "
                       "evolves the node it came from instead.", icon=":material/warning:")
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        op = c1.selectbox("Operation", ["sample"] + list(operation_names()), key="evolve_op",
                          format_func=lambda o: "sample one (by the run's weights)" if o == "sample" else o)
        go = c2.button("Evolve", key="evolve_go", type="primary", width="stretch")
        if go:
            with st.spinner(f"Evolving with {app_common.md(run['config'].model)}: evolve, check, answer, judge, score..."):
                try:
                    result = pipeline.step_sync(db, run_id, node_id, None if op == "sample" else op)
                except LLMError as e:
                    st.error(f"The model could not be reached: {app_common.md(e)}")
                except Exception as e:  # e.g. the embedded model failed to start: its message says why
                    st.error(f"The step failed: {app_common.md(e)}. Check the endpoint settings in the sidebar and try again.")
                else:
                    app_common.select_widget_value("evolve_node", result.node.id)
                    st.rerun()

    nav1, nav2, nav3 = st.columns(3)
    if detail.parent is not None and nav1.button("Back to the parent", key="evolve_parent"):
        app_common.select_widget_value("evolve_node", detail.parent.id)
        st.rerun()
    if detail.children:
        nav2.caption(f"{len(detail.children)} child(ren) already: pick one in the tree or the list.")

    st.subheader("This node" if node.status == SEED else "The step's result")
    app_common.show_node(detail, expanded=True)

    if node.status != SEED:
        with st.container(border=True):
            st.markdown("**Keep or discard by hand** (the rules' verdicts stay stored)")
            note = st.text_input("Note (optional)", key=f"evolve_note_{node_id}")
            k1, k2 = st.columns(2)
            if k1.button("Keep", key="evolve_keep", width="stretch", disabled=node.status == "kept"):
                pipeline.override(db, node_id, True, note)
                st.toast("Kept by hand.")
                st.rerun()
            if k2.button("Discard", key="evolve_discard", width="stretch",
                         disabled=node.status == "eliminated" and node.rule == "manual"):
                pipeline.override(db, node_id, False, note)
                st.toast("Discarded by hand.")
                st.rerun()

with right:
    st.subheader("Lineage of this seed")
    frame = app_common.nodes_frame(db, run_id)
    tree = app_support.lineage_nodes(frame, node.root_id)
    fig = viz.lineage_figure(tree, title="")
    st.plotly_chart(fig, key="evolve_tree", on_select="rerun", selection_mode="points")
    st.caption(f"{len(tree)} node(s) in this tree · colour = operation, symbol = status. Click a node to select it.")
    summary = db.run_summary(run_id)
    st.caption(f"Session: {summary['nodes']} nodes, {summary['calls']} calls, "
               f"{summary['prompt_tokens'] + summary['completion_tokens']:,} tokens, ${summary['cost_usd']:.4f}.")
