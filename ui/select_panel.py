"""The Export page's selection panel: choose the best N kept nodes (Deita: score first, skip what is too close to a
node already chosen), see what was taken and skipped per round, operation and skill, the score before and after,
and download the chosen set. The logic is evolab/analysis/select.py; the Diversity map stars the chosen nodes."""
from __future__ import annotations

import functools

import streamlit as st

from evolab.analysis import select as selection
from evolab.analysis import viz
from evolab.analysis.frames import score_metrics
from evolab.embeddings import embed
from evolab.engine import checking
from evolab.export import formats
from evolab.store import Store
from ui import common as app_common


def _records_bytes(db_path: str, run_ids: tuple[str, ...], chosen_ids: tuple[str, ...], fmt: str) -> bytes:
    """Built when the button is pressed, in Streamlit's download thread: its own connection."""
    db = Store(db_path)
    try:
        return formats.dumps(selection.chosen_records(db, run_ids, chosen_ids, fmt), fmt).encode("utf-8")
    finally:
        db.close()


def selection_panel(db: Store, run_id: str) -> None:
    st.subheader("Choose the best N (Deita)")
    st.caption("Score first, diversity aware (Liu et al. 2024, *What Makes Good Data for Alignment?*): the kept "
               "nodes sorted by a score, taken in that order, skipping any too close in embedding space to one "
               "already taken. The same as `python -m evolab select`; every choice and skip is recorded in the store.")
    nodes = app_common.nodes_frame(db, run_id)
    metrics = [m for m in score_metrics() if m in nodes and nodes[m].notna().any()]
    if not metrics or not (nodes["status"] == "kept").any():
        st.info("This run has no scored kept nodes yet.", icon=":material/info:")
        return
    model = app_common.map_embedder(db, run_id)
    info = embed.threshold_info(model, db)
    with st.form("select_form", border=True):
        c1, c2, c3 = st.columns(3)
        n = c1.number_input("How many (N)", 1, 1_000_000, min(1000, int((nodes["status"] == "kept").sum())),
                            key="select_n")
        default_score = [m for m in selection.DEFAULT_SCORE if m in metrics] or metrics[:1]
        score = c2.multiselect("Sort by the product of", metrics, default_score, key="select_score")
        kind = c3.radio("Too close at", list(selection.THRESHOLD_KINDS), key="select_kind",
                        format_func=lambda k: f"{k}: cosine ≥ {getattr(info, k):.3f}",
                        help=f"The calibrated thresholds of {app_common.md(model.name)}: run_map marks nearly the "
                             "same text; novelty also evolved rewrites of it; near_duplicate paraphrases.")
        c4, c5, c6 = st.columns(3)
        cap_by = c4.selectbox("Cap per", ["none", *selection.CAP_BY], key="select_cap_by")
        cap = c4.number_input("At most", 1, 10_000, 3, key="select_cap")
        reviews = c5.radio("Reviews", list(selection.REVIEW_FILTERS), index=1, key="select_reviews",
                           format_func=lambda r: {"any": "ignore them", "not_discarded": "leave out discarded",
                                                  "kept": "only reviewed keeps"}[r])
        checked = c6.multiselect("Only these answer checks (none = any)",
                                 [*checking.CHECK_STATUSES, checking.UNCHECKED], key="select_checked")
        rouge = c6.checkbox("Also skip ROUGE-L > 0.7 with a chosen node", key="select_rouge")
        submitted = st.form_submit_button("Choose", type="primary", icon=":material/filter_alt:")
    if submitted:
        params = selection.SelectionParams(
            n=int(n), score=tuple(score), threshold_kind=kind, cap_by=None if cap_by == "none" else cap_by,
            cap=None if cap_by == "none" else int(cap), checked=tuple(checked), reviews=reviews, rouge=rouge)
        try:
            with st.spinner("Embedding (cached vectors are reused) and choosing..."):
                chosen = selection.select(db, run_id, params, embedder=model, nodes=nodes)
                selection.record_selection(db, chosen)
        except selection.SelectionError as e:
            st.error(app_common.md(e))
            return
    stored = db.selections(run_id)
    if not stored:
        return
    row, frame = selection.stored_selection(db, stored[0]["id"], nodes)
    params = row["params"]
    st.markdown(f"**Selection {row['id']}**: {row['n_chosen']} chosen of {row['n_requested']} asked, from "
                f"{len(frame)} candidates; score {app_common.md(' × '.join(params['score']))}; too close at cosine ≥ "
                f"{row['threshold']:.3f} ({app_common.md(row['embedder'])})"
                + (f"; at most {params['cap']} per {params['cap_by']}" if params.get("cap_by") else "")
                + ". The Diversity map stars the chosen nodes.")
    tabs = st.tabs(["By round", "By operation", "By skill", "Score before and after"])
    for tab, by in zip(tabs, ("round", "operation", "skill")):
        tab.dataframe(selection.outcome_table(frame, by), hide_index=True, width="stretch")
    tabs[3].plotly_chart(viz.selection_scores_figure(selection.score_distribution(frame),
                                                     " × ".join(params["score"])), key="select_scores")
    fmt = st.radio("Download as", list(formats.FORMATS), horizontal=True, key="select_format")
    chosen_ids = tuple(frame.loc[frame["chosen"]].sort_values("rank")["id"])
    st.download_button(f"Download the {len(chosen_ids)} chosen ({fmt})",
                       data=functools.partial(_records_bytes, db.path, tuple(row["run_ids"]), chosen_ids, fmt),
                       file_name=f"evolab-{run_id}-selection-{row['id']}.{'json' if fmt in ('alpaca', 'sharegpt') else 'jsonl'}",
                       on_click="ignore", icon=":material/download:", key="select_download",
                       disabled=not chosen_ids)
