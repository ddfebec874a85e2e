"""Export: training data in every CLI format with filters, the dataset card and a push to the Hugging Face Hub, the
slide deck and the HTML report. Files are built when a download button is pressed, not on every page view."""
from __future__ import annotations

import functools

import streamlit as st

from evolab.app import support as app_support
from evolab.engine import checking
from evolab.engine.eliminator import all_rule_ids
from evolab.engine.scoring import SCORERS
from evolab.app import share
from evolab.export import card as card_module
from evolab.export import formats as export
from evolab.export import hub
from evolab.llm.base import redact_url
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

st.subheader("Dataset card and the Hugging Face Hub")
st.caption("The card tells the run's story from the store (seeds, model, operations, eliminations, scores per round, "
           "review agreement, checked answers, cost, how to reproduce it) under the metadata the Hub reads.")
h1, h2 = st.columns([3, 2])
hub_formats = h1.multiselect("Formats in the card and the push", list(export.FORMATS), default=[fmt],
                             key="export_hub_formats", help="Each becomes a config of the data set (data/FORMAT.json).")
license = h2.text_input("License (a Hub license id)", "", key="export_license", placeholder="e.g. cc-by-4.0",
                        help="Stated in the card's metadata; leave empty to state none.")
problem = card_module.license_problem(license.strip() or None) if license.strip() else None
if problem or not hub_formats:
    st.warning(app_common.md(problem or "Choose at least one format."))
else:
    card = share.card(db.path, run_id, hub_formats, license.strip(), select)
    with st.container(border=True):
        st.markdown(card.text.replace("# Dataset card", "#### Dataset card", 1))
    with st.expander("The metadata the Hub reads (YAML)"):
        st.code(card.data.to_yaml(), language="yaml")
    st.download_button("Download the card (README.md)", data=functools.partial(
        share.card_file, db.path, run_id, hub_formats, license.strip(), select), file_name="README.md",
        mime="text/markdown", on_click="ignore", key="export_card", icon=":material/description:")

    st.markdown(f"**Push to the Hub** at {app_common.md_code(redact_url(hub.hub_endpoint()))} (set HF_ENDPOINT where "
                "the app is started for another Hub): the formats above and the card, in one commit.")
    f1, f2, f3 = st.columns([3, 2, 2])
    repo_id = f1.text_input("Repository (OWNER/NAME)", key="export_hub_repo", placeholder="my-org/evolved-data")
    revision = f2.text_input("Branch", "main", key="export_hub_branch")
    token_env = f3.text_input("Token variable", hub.DEFAULT_TOKEN_ENV, key="export_hub_token_env",
                              help="The NAME of the variable holding a write token where the app runs; the app reads "
                                   "HF_TOKEN or a name listed in EVOLAB_KEY_VARS. The token is never stored.")
    private = st.checkbox("Create it private", key="export_hub_private")
    job = share.push_job(run_id)
    pushed = st.button("Push to the Hub", type="primary", icon=":material/cloud_upload:", key="export_hub_push",
                       disabled=bool(job and job.alive))
    if pushed:
        try:
            share.start_push(db.path, run_id, repo_id.strip(), token_env=token_env.strip(), formats=hub_formats,
                             select=select, private=private, revision=revision.strip(), license=license.strip())
            st.rerun()
        except hub.HubError as e:
            st.error(app_common.md(e), icon=":material/error:")

    @st.fragment(run_every=1.0 if job is not None and job.alive else None)
    @app_common.guarded
    def push_status() -> None:
        current = share.push_job(run_id)
        if current is None:
            return
        if st.session_state.get("_hub_push_alive") and not current.alive:  # done: enable the button again
            st.session_state["_hub_push_alive"] = False
            st.rerun(scope="app")
        st.session_state["_hub_push_alive"] = current.alive
        repo = current.info.get("repo_id", "")
        if current.alive:
            st.info(f"Pushing to {app_common.md(repo)}: {app_common.md(current.progress.get('step', 'starting'))}",
                    icon=":material/sync:")
        elif current.status == "failed":
            st.error(app_common.md(current.error), icon=":material/error:")
        elif current.result is not None:
            result = current.result
            st.success(f"Pushed {len(result.files)} files to {app_common.md(redact_url(result.url))} (branch "
                       f"{app_common.md(result.revision)}, commit {app_common.md((result.commit or '')[:12])}).",
                       icon=":material/cloud_done:")

    push_status()

st.subheader("Slides and figures")
st.caption("A slide deck (16:9 .pptx) of the run: the seed set, what evolution did per round and operation, what the "
           "eliminator dropped, drift, the diversity map, one lineage step by step, the judge beside checked "
           "answers, and cost. It is built when you press the button (figures are rendered through Chromium: about "
           "a second each). Every figure as a PNG, SVG or PDF file: "
           + app_common.md_code(f"python -m evolab figures --db {db.path} --run {run_id} --out figures/"))
st.download_button("Build and download the slides", data=functools.partial(share.deck_file, db.path, run_id),
                   file_name=f"evolab-{run_id}-slides.pptx",
                   mime="application/vnd.openxmlformats-officedocument.presentationml.presentation",
                   on_click="ignore", key="export_slides", icon=":material/slideshow:")

st.subheader("HTML report")
st.caption("One self-contained HTML file with every figure (lineage, drift, eliminations, diversity, cost). "
           "It is built when you press the button; the diversity section embeds the instructions, so a big "
           "run takes a few seconds.")
st.download_button("Build and download the report", data=functools.partial(app_support.report_bytes, db.path, run_id),
                   file_name=f"evolab-{run_id}-report.html", mime="text/html", on_click="ignore",
                   key="export_report", icon=":material/summarize:")
