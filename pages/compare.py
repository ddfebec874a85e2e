"""Compare: two rounds of one run, or two runs on the same seeds: metric deltas and a pairwise LLM judge
asked twice with the answers swapped (position bias cancelled)."""
from __future__ import annotations

import streamlit as st

from evolab.analysis import frames as analysis
from evolab.analysis import viz
from evolab.app import support as app_support
from evolab.audit import judge, review
from ui import common as app_common

db = app_common.store()
settings = app_common.settings()
st.title("Compare")
st.caption("Are the evolved data better than where they started? Means of the scores, and a pairwise judge "
           "that sees each pair twice with the answers swapped; A wins only when it wins in both orders "
           "(or wins one and ties the other).")

runs = [r for r in db.list_runs() if r["status"] != "interactive"] or db.list_runs()
if not runs:
    app_common.no_runs(db)
    st.stop()

mode = st.radio("Compare", ["two rounds of one run", "two runs"], horizontal=True, key="compare_mode")
metrics = list(analysis.drift_metrics())

if mode == "two rounds of one run":
    run = app_common.pick_run(db, key="compare_run", runs=runs)
    nodes = app_common.nodes_frame(db, run["id"])
    rounds = sorted(int(r) for r in nodes["round"].unique()) if not nodes.empty else []
    if len(rounds) < 2:
        st.info("This run has fewer than two rounds yet: let it run on the Runs page, then compare round 0 "
                "(the seeds) with a later round.", icon=":material/arrow_forward:")
        st.stop()
    c1, c2 = st.columns(2)
    round_a = c1.selectbox("Round A", rounds, index=0, key="compare_round_a")
    round_b = c2.selectbox("Round B", rounds, index=len(rounds) - 1, key="compare_round_b")
    label_a, label_b = f"round {round_a}", f"round {round_b}"
    side_a, side_b = app_support.pool(nodes, round_a), app_support.pool(nodes, round_b)
    items = judge.round_items(db, run["id"], round_a, round_b)
    comparison = judge.rounds_comparison(run["id"], round_a, round_b)
    job_kwargs = {"run_id": run["id"], "round_a": round_a, "round_b": round_b}
    compared_runs = [run["id"]]
    checked_sides = [(label_a, run["id"], [round_a]), (label_b, run["id"], [round_b])]
else:
    if len(runs) < 2:
        st.info("Only one run in this store: start a second one on the same seeds (e.g. another model or other "
                "operation weights) on the Runs page.", icon=":material/arrow_forward:")
        st.stop()
    by_id = {r["id"]: r for r in runs}
    ids = list(by_id)
    c1, c2 = st.columns(2)
    run_a = c1.selectbox("Run A", ids, index=1 if len(ids) > 1 else 0, key="compare_run_a",
                         format_func=lambda i: app_support.run_label(by_id[i]))
    run_b = c2.selectbox("Run B", ids, index=0, key="compare_run_b",
                         format_func=lambda i: app_support.run_label(by_id[i]))
    label_a, label_b = run_a, run_b
    side_a = app_support.pool(app_common.nodes_frame(db, run_a))
    side_b = app_support.pool(app_common.nodes_frame(db, run_b))
    items = judge.run_items(db, run_a, run_b) if run_a != run_b else []
    comparison = judge.runs_comparison(run_a, run_b)
    job_kwargs = {"run_id": run_a, "run_b": run_b}
    compared_runs = list(dict.fromkeys([run_a, run_b]))
    checked_sides = [(label_a, run_a, None), (label_b, run_b, None)]

st.subheader("Metric means (seeds and kept nodes)")
st.caption(f"The big number is B ({label_b}); the arrow is the change from A ({label_a}).")
deltas = app_support.compare_means(side_a, side_b, metrics, "A", "B")
cols = st.columns(len(metrics))
for col, row in zip(cols, deltas.to_dict("records")):
    value = row["B mean"]
    delta = row["change (B - A)"]
    col.metric(viz.metric_label(row["metric"]), "–" if value != value else f"{value:.2f}",
               None if delta != delta else f"{delta:+.2f}", help=f"A ({label_a}): {row['A mean']:.2f}, "
                                                                f"n = {row['A n']} · B ({label_b}): n = {row['B n']}")
st.dataframe(deltas, hide_index=True, width="stretch")

st.subheader("Pairwise judge")
st.warning(review.JUDGE_CAVEAT, icon=":material/balance:")
checked = review.checked_share(db, compared_runs)
job = app_support.judge_job(comparison)
st.caption(f"{len(items)} pair(s) to judge: {2 * len(items)} calls to **{app_common.md(settings.endpoint_label)}** "
           "(change the judge model in the sidebar). Judgments are stored and shown again on reload.")
if not items:
    st.info("No seed has a usable answer on both sides yet (seeds and kept nodes with a response). Runs answer "
            "their seeds and kept nodes; step-through sessions answer only what they evolve.")
elif st.button("Judge these pairs", key="compare_judge", type="primary",
               disabled=bool(job and job.alive) or bool(settings.problems())):
    app_support.start_judge(db.path, settings.run_config(), comparison, **job_kwargs)
    st.rerun()


@st.fragment(run_every=2.0 if job is not None and job.alive else None)
@app_common.guarded
def judgments() -> None:
    current = app_support.judge_job(comparison)
    alive = current is not None and current.alive
    if st.session_state.get("_judge_alive") and not alive:
        st.session_state["_judge_alive"] = False
        st.rerun(scope="app")
    st.session_state["_judge_alive"] = alive
    if current is not None and current.status == "failed":
        st.error(f"The judge failed: {app_common.md(current.error)}. Check the endpoint, model and key in the sidebar, then "
                 "judge again (finished judgments are kept).")
    rows = db.judgments(comparison)
    if alive:
        st.progress(min(1.0, len(rows) / max(1, len(items))), text=f"Judging: {len(rows)} of {len(items)} pairs")
    if not rows:
        if not alive:
            st.caption("Not judged yet.")
        return
    s = judge.summarize_judgments(rows)
    m = st.columns(4)
    m[0].metric(f"A ({label_a}) wins", s["win"], f"{s['win_rate']:.0%}" if s["n"] else None, delta_color="off")
    m[1].metric("Ties", s["tie"], f"{s['tie_rate']:.0%}" if s["n"] else None, delta_color="off")
    m[2].metric(f"B ({label_b}) wins", s["lose"], f"{s['lose_rate']:.0%}" if s["n"] else None, delta_color="off")
    m[3].metric("Unparsed", s["unknown"], help="The judge's reply had no two scores on its first line, in at "
                                               "least one order: never counted as a tie.")
    swap = judge.position_swap_counts(rows)
    st.markdown(f"**Position swap:** each pair was judged twice with the answers swapped. The verdict for A was "
                f"the same in both orders for {swap['same']} of {swap['both_read']} pair(s); the order changed it "
                f"for {swap['flipped']} (position bias); {swap['unread']} unreadable in at least one order.")
    if checked is None:
        st.markdown(f"**Checked answers:** {review.NO_CHECKED_ANSWERS}")
    else:
        st.markdown("**Checked answers** (final number the same when answered again): "
                    + " · ".join(review.checked_share_line(checked, f"{side} ({label})", run_id, rounds)
                                 for side, (label, run_id, rounds) in zip("AB", checked_sides)))
    st.dataframe(app_support.judgments_table(rows, db), hide_index=True, width="stretch",
                 column_config={"A instruction": st.column_config.TextColumn(width="large"),
                                "B instruction": st.column_config.TextColumn(width="large")})


judgments()

st.subheader("How often a person agrees with the rules")
app_common.agreement_section(db, compared_runs, key="compare_agreement")
