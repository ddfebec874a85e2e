"""Diversity: the UMAP map of a run's instructions, diversity numbers per round, near-duplicate pairs."""
from __future__ import annotations

import streamlit as st

from evolab.analysis import select, viz, warmup
from evolab.app import support as app_support
from evolab.embeddings import calibration as embed_calibration
from evolab.embeddings import embed
from ui import common as app_common

db = app_common.store()
st.title("Diversity")
st.caption("Does the set stay diverse as it evolves? One UMAP map of every instruction of the run "
           "(all rounds in one fit), near-duplicates ringed in red, and the numbers per round.")

run = app_common.pick_run(db, key="diversity_run")
if run is None:
    app_common.no_runs(db)
    st.stop()
run_id = run["id"]
nodes = app_common.nodes_frame(db, run_id)
if nodes.empty:
    st.info("This run has no nodes yet: start it on the Runs page.", icon=":material/arrow_forward:")
    st.stop()

if warmup.warm_state(db, run_id) is not None:  # the CLI's background warm-up is embedding this run: wait on it
    st.info("The map of this run is being prepared by the warm-up the CLI started after the run; this page opens "
            "it when it is ready, instead of embedding the same texts a second time.", icon=":material/hourglass_top:")

    @st.fragment(run_every=1.0)
    def wait_for_warm_up() -> None:
        state = warmup.warm_state(db, run_id)
        if state is None:  # done (or gone): draw the page from the warmed caches
            st.rerun(scope="app")
        total = int(state.get("total") or 0)
        st.progress(min(1.0, int(state.get("done") or 0) / total) if total and state.get("stage") == "embedding"
                    else 0.0, text=f"Warm-up (process {state.get('pid')}): {warmup.describe(state)}")

    wait_for_warm_up()
    st.stop()

c1, c2 = st.columns([2, 1])
color_by = c1.radio("Colour by", ["round", "operation", "status"], horizontal=True, key="diversity_color")
map_model = app_common.map_embedder(db, run_id)
thresholds = embed.threshold_info(map_model, db)  # the model's own calibrated threshold is the default
app_common.forget_when_changed("diversity_threshold", map_model.name)
threshold = c2.slider("Near-duplicate at cosine ≥", 0.30, 0.99, round(thresholds.run_map, 3), 0.001,
                      format="%.3f", key="diversity_threshold",
                      help=f"Calibrated for {app_common.md(map_model.name)}: {thresholds.run_map:.3f}. Cosines crowd differently "
                           "per model, so a threshold belongs to its model; an evolved rewrite is as close as a "
                           "paraphrase, so a mark means nearly the same text.")
try:
    app_common.prepare_map(db, run_id)  # shows embedding k of n, then fitting, when there is work left
    with st.spinner("Marking near-duplicates..."):
        frame, div, pairs = app_common.diversity(db, run_id, threshold)
except Exception as e:  # missing model files, an embeddings endpoint that fails: the message says what to do
    st.error(f"The map could not be computed: {app_common.md(e)}. Set EVOLAB_EMBED_MODEL to a local sentence-transformers "
             "folder or EVOLAB_EMBED_BASE_URL to an embeddings endpoint, then reload.")
    st.stop()

language_warning = embed_calibration.english_only_warning(list(nodes["language"].dropna().unique()), map_model.name)
if language_warning:
    st.warning(language_warning, icon=":material/translate:")
st.caption(f"Map and marks: {app_common.md(thresholds.caption)}" + ("" if abs(threshold - thresholds.run_map) < 5e-4
                                                      else f"; shown at your cosine ≥ {threshold:.3f}"))
if thresholds.note:
    st.caption(app_common.md(thresholds.note))

marks = select.selection_marks(db, run_id)  # the latest selection (Export page or `evolab select`) of this run
if marks and st.checkbox("Star the nodes the latest selection chose", True, key="diversity_chosen"):
    frame = frame.assign(chosen=frame["id"].map(marks).fillna(False).astype(bool))

left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(viz.umap_figure(frame, color_by), key="diversity_map", on_select="rerun",
                    selection_mode="points")
with right:
    picked = app_support.selected_node_id(st.session_state.get("diversity_map"))
    if picked and picked in set(frame["id"]):
        row = frame[frame["id"] == picked].iloc[0]
        st.markdown(f"{app_common.status_badge(row['status'], row['rule'] if isinstance(row['rule'], str) else None)}"
                    f" round **{row['round']}** · **{app_common.md(row['operation'])}**")
        app_common.text_block("Instruction", row["instruction"])
        if row["near_duplicate"]:
            near = frame[frame["id"] == row["nearest_id"]]
            st.markdown(f"Nearest (cosine {row['max_cosine']:.3f}):")
            if len(near):
                app_common.text_block("Its near-duplicate", near.iloc[0]["instruction"])
    else:
        st.caption("Click a point to read its instruction here; hover for a quick look.")
    dup = int(frame["near_duplicate"].sum())
    st.metric("Near-duplicates", f"{dup} of {len(frame)}")

st.subheader("Diversity per round")
st.caption("Of the pool evolution keeps (seeds and kept nodes): mean pairwise cosine distance, mean distance "
           "to the nearest neighbour, share of near-duplicates, and the number of clusters. A round with a "
           "single node has no distances (None).")
st.plotly_chart(viz.diversity_figure(div, title=""), key="diversity_rounds")
st.dataframe(div, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                            ("mean_pairwise_distance", "mean_nn_distance", "near_duplicate_share")})

st.subheader("Near-duplicate pairs")
if pairs.empty:
    st.caption(f"No pair of instructions is at cosine ≥ {threshold:.2f}.")
else:
    st.dataframe(pairs[["cosine", "text_a", "text_b", "id_a", "id_b"]], hide_index=True, width="stretch",
                 column_config={"cosine": st.column_config.NumberColumn(format="%.3f"),
                                "text_a": st.column_config.TextColumn("instruction A", width="large"),
                                "text_b": st.column_config.TextColumn("instruction B", width="large")})
