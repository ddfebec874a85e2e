"""Export: training data in every CLI format with filters, the dataset card and the HTML report.
Files are built when a download button is pressed, not on every page view."""
from __future__ import annotations

import functools

import streamlit as st

from evolab.app import support as app_support
from evolab.engine import checking
from evolab.engine.eliminator import all_rule_ids
from evolab.engine.scoring import SCORERS
from evolab.export import formats as export
from ui import common as app_common
from ui import select_panel

db = app_common.store()
st.title("Export")

run = app_common.pick_run(db, key="export_run")
if run is None:
    app_common.no_runs(db)
    st.stop()
run_id = run["id"]

FORMAT_HELP = {
    "alpaca": "Alpaca JSON: a list of {instruction, input, output}",
    "sharegpt": "ShareGPT JSON: conversations of human and gpt turns",
    "openai": "OpenAI chat JSONL: one {messages: [user, assistant]} a line (fine-tuning format)",
    "lineage": "Lineage JSONL: every field of every node (ids, parent, round, operation, status, rule, scores)",
}
st.subheader("Training data")
c1, c2 = st.columns([2, 3], gap="large")
with c1:
    fmt = st.radio("Format", list(export.FORMATS), key="export_format", format_func=lambda f: FORMAT_HELP.get(f, f))
with c2:
    status = st.radio("Nodes", ["kept", "all"], horizontal=True, key="export_status",
                      format_func=lambda s: {"kept": "the data set: kept nodes and answered seeds",
                                             "all": "every node (eliminated and failed too)"}[s])
    include_seeds = st.checkbox("Include the seeds (round 0)", True, key="export_seeds")
    rules = st.multiselect("Only eliminated nodes with these rules (kept nodes always stay)", list(all_rule_ids()),
                           key="export_rules", disabled=status != "all",
                           help="With every node: keep the kept ones plus those eliminated by the rules chosen.")
    # A minimum per scorer with one score on a scale (difficulty, quality, a plugin's), from the registry.
    on_a_scale = [s for s in SCORERS.values() if s.scale and len(s.metric_names()) == 1]
    min_scores = {}
    for col, scorer in zip(st.columns(max(len(on_a_scale), 1)), on_a_scale):
        low, high = scorer.scale
        value = col.number_input(f"Minimum {scorer.name} (0 = any)", 0.0, float(high), 0.0, 0.5,
                                 key=f"export_min_{scorer.name}", help=scorer.label or None)
        if value > 0:
            min_scores[scorer.name] = value
    checked = st.multiselect("Only these answer checks (none chosen = any)", list(checking.CHECK_STATUSES)
                             + [checking.UNCHECKED], key="export_checked",
                             help="Checked answers (self-consistency): consistent = the answer's number came back "
                                  "in most of k new samples; see the Drift page and `python -m evolab check`.")

select = {"status": status, "include_seeds": include_seeds, "rules": rules if status == "all" else None,
          "min_scores": min_scores or None, "checked": checked or None}
count = app_support.export_count(db, run_id, select)
st.metric("Records", count)
if count == 0:
    st.warning("No node passes these filters (a run that has not answered anything yet exports nothing): "
               "loosen the filters, or let the run finish on the Runs page.")
else:
    st.download_button(
        f"Download {app_common.md(app_support.export_filename(run_id, fmt))}",
        data=functools.partial(app_support.export_bytes, db.path, run_id, fmt, select),
        file_name=app_support.export_filename(run_id, fmt),
        mime="application/json" if fmt in ("alpaca", "sharegpt") else "application/jsonl",
        on_click="ignore", type="primary", icon=":material/download:", key="export_download")

select_panel.selection_panel(db, run_id)  # choose the best N (Deita): ui/select_panel.py

st.subheader("Dataset card")
card = export.dataset_card(db, run_id)
with st.container(border=True):
    st.markdown(card.replace("# Dataset card", "#### Dataset card", 1))
st.download_button("Download the card (Markdown)", data=functools.partial(app_support.card_bytes, db.path, run_id),
                   file_name=f"evolab-{run_id}-card.md", mime="text/markdown", on_click="ignore",
                   key="export_card", icon=":material/description:")

st.subheader("HTML report")
st.caption("One self-contained HTML file with every figure (lineage, drift, eliminations, diversity, cost). "
           "It is built when you press the button; the diversity section embeds the instructions, so a big "
           "run takes a few seconds.")
st.download_button("Build and download the report", data=functools.partial(app_support.report_bytes, db.path, run_id),
                   file_name=f"evolab-{run_id}-report.html", mime="text/html", on_click="ignore",
                   key="export_report", icon=":material/summarize:")
