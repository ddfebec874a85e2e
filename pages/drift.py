"""Drift: difficulty, quality, complexity and length per round and per operation; eliminations by rule."""
from __future__ import annotations

import streamlit as st

from evolab.analysis import frames as analysis
from evolab.analysis import opstats, viz
from evolab.engine import adaptive, checking
from ui import common as app_common

db = app_common.store()
st.title("Drift")
st.caption("Did evolution make instructions harder, and at what cost in quality? Means per round and operation "
           "with 95% confidence intervals (bold line: all operations).")

run = app_common.pick_run(db, key="drift_run")
if run is None:
    app_common.no_runs(db)
    st.stop()
run_id = run["id"]
nodes = app_common.nodes_frame(db, run_id)
if nodes.empty or not (nodes["round"] > 0).any():
    st.info("Nothing evolved in this run yet: start or resume it on the Runs page, then come back.",
            icon=":material/arrow_forward:")
    st.page_link(app_common.PAGES["runs"], label="Runs", icon=":material/play_circle:")
    st.stop()

which = st.radio("Nodes", ["kept pool (seeds and kept)", "every node (eliminated too)"], horizontal=True,
                 key="drift_which", help="The kept pool is the data set; every node shows what the model tried.")
statuses = ("seed", "kept") if which.startswith("kept") else None
frame = analysis.round_operation_frame(nodes, include_all=True, statuses=statuses)

produced = int((nodes["round"] > 0).sum())
kept_share = analysis.kept_share(nodes)
m = st.columns(4)
m[0].metric("Rounds", int(nodes["round"].max()))
m[1].metric("Evolved nodes", produced)
m[2].metric("Kept", f"{kept_share:.0%}" if kept_share == kept_share else "–")
m[3].metric("Eliminated or failed", int(nodes["status"].isin(["eliminated", "failed"]).sum()))

c1, c2 = st.columns(2)
for i, metric in enumerate(analysis.drift_metrics()):
    with (c1 if i % 2 == 0 else c2):
        st.plotly_chart(viz.drift_figure(frame, metric), key=f"drift_{metric}")

st.subheader("Parent → child change by operation")
deltas = analysis.deltas_frame(nodes)
st.plotly_chart(viz.deltas_figure(deltas, title=""), key="drift_deltas")

st.subheader("Eliminations by rule")
e1, e2 = st.columns(2)
with e1:
    st.plotly_chart(viz.eliminations_figure(analysis.eliminations_frame(nodes, "round"), "round"),
                    key="drift_elim_round")
with e2:
    st.plotly_chart(viz.eliminations_figure(analysis.eliminations_frame(nodes, "operation"), "operation"),
                    key="drift_elim_operation")
table = analysis.eliminations_table(nodes, "operation")
if table.empty:
    st.caption("No eliminations in this run.")
else:
    st.dataframe(table, width="stretch")

st.subheader("What each operation did")
ops_split = st.radio("Per operation and", ["round", "language", "skill", "none"], horizontal=True, key="drift_ops_split",
                     help="Children tried, kept share, difficulty change (95% CI) and calls per kept child.")
ops, op_weights = opstats.run_frames(db, run_id, nodes, by=[] if ops_split == "none" else [ops_split])
st.plotly_chart(viz.operation_stats_figure(ops, None if ops_split == "none" else ops_split, title=""), key="drift_ops")
st.dataframe(opstats.summary_table(ops), hide_index=True, width="stretch")
if op_weights is not None:
    st.markdown("**Adaptive operation weights** (Thompson sampling)")
    st.caption(f"Reward: {adaptive.REWARD_TEXT}. Each line is the posterior mean of an operation's reward as each "
               "decision saw it; dots mark the operation chosen.")
    st.plotly_chart(viz.adaptive_weights_figure(op_weights, title=""), key="drift_op_weights")

with st.expander("The numbers: per round and operation"):
    cols = ["round", "operation", "n", "kept", "eliminated", "failed", "eliminated_share"] + [
        f"{m}_mean" for m in analysis.drift_metrics()]
    st.dataframe(frame[[c for c in cols if c in frame]], hide_index=True, width="stretch")
    st.dataframe(deltas, hide_index=True, width="stretch")

st.subheader("How often a person agrees with the rules")
app_common.agreement_section(db, [run_id], key="drift_agreement")

st.subheader("Checked answers")
st.caption(f"{viz.CONSISTENCY_QUESTION} Items whose answer is a number were answered {checking.DEFAULT_K} more times "
           f"at temperature {checking.DEFAULT_TEMPERATURE}; an answer is consistent when most samples give the same "
           f"number (within {checking.TOLERANCE:.0%}). 95% Wilson intervals; hollow markers: too few to say.")
consistency = checking.share_with_intervals(checking.consistent_share(db, [run_id]))
st.plotly_chart(viz.consistency_figure(consistency, title=""), key="drift_consistency")
if consistency.empty:
    st.caption("Not checked yet. In the app: tick **Check numeric answers** under *Answers, judges and rules* on the "
               f"Runs page before starting a run. From the command line: "
               f"{app_common.md_code(f'python -m evolab check --db {db.path} --run {run_id}')} ({checking.DEFAULT_K} "
               "calls per numeric item), or start runs with --check-answers.")
    st.page_link(app_common.PAGES["runs"], label="Runs", icon=":material/play_circle:")
else:
    st.dataframe(consistency.drop(columns=["run_id"]), hide_index=True, width="stretch")
