"""Templates: the evolving prompts per operation and language, their versions (shipped and tuned) with diffs, template
tuning on a run's failures (Auto Evol-Instruct) with live progress, adopting a candidate, and judging what two
versions kept."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from evolab.app import tuning as tuning_app
from evolab.audit import judge, tuning
from evolab.engine import templates
from evolab.engine.operations import LANGUAGES, operation_names
from ui import common as app_common

db = app_common.store()
settings = app_common.settings()
st.title("Templates")
st.caption("Each operation sends the model a prompt template. The shipped templates are the roots; tuning rewrites "
           "one from the children a run threw away, tries each candidate for one round on a few of the run's seeds, "
           "and keeps the choice to you. Adopted versions can be picked per run (Runs page, or `--template OP=VERSION`).")

c1, c2 = st.columns(2)
operation = c1.selectbox("Operation", list(operation_names()), key="templates_op")
language = c2.selectbox("Language", list(LANGUAGES), key="templates_lang",
                        format_func=lambda x: tuning.LANGUAGE_NAMES.get(x, x))

# -- versions ------------------------------------------------------------------------------------------------
st.subheader("Versions")
found = templates.versions(db, operation, language)
st.dataframe(tuning_app.versions_table(db, operation, language), hide_index=True, width="stretch")
by_version = {v.version: v for v in found}
app_common.valid_choice("templates_version", list(by_version))
chosen = by_version[st.selectbox("Show", list(by_version), key="templates_version",
                                 format_func=lambda h: by_version[h].label)]
t1, t2 = st.tabs(["Text", "Diff against its parent"])
t1.code(chosen.text, language=None, wrap_lines=True)
diff = templates.diff_against_parent(db, chosen)
if diff is None:
    t2.caption("The shipped template has no parent." if chosen.parent_version is None
               else f"Its parent {chosen.parent_version} is not in this store.")
else:
    t2.code(diff or "(no change)", language="diff")

# -- tuning ----------------------------------------------------------------------------------------------------
st.subheader("Tune on a run")
runs = tuning_app.user_runs(db)
if not runs:
    app_common.no_runs(db)
    st.stop()
run = app_common.pick_run(db, key="templates_run", runs=runs)
failures = tuning.collect_failures(db, run["id"], operation, language)
t1, t2 = st.columns(2)
candidates = t1.number_input("Candidates to ask for", 1, 9, tuning.DEFAULT_CANDIDATES, key="templates_candidates")
dev_seeds = t2.number_input("Dev seeds (one round each)", 1, 500, tuning.DEFAULT_DEV_SEEDS, key="templates_dev_seeds")
rules = pd.Series([f["rule"] for f in failures]).value_counts().to_dict() if failures else {}
st.caption(f"{len(failures)} {language} children of **{operation}** were eliminated in this run"
           + (": " + ", ".join(f"{k} {v}" for k, v in rules.items()) if rules else "")
           + f". The optimizer and the dev runs use the run's own endpoint and model ({app_common.md(run['config'].model)}); each "
             f"candidate costs about {int(dev_seeds)} evolution steps.")
if st.button("Start tuning", key="templates_start", type="primary", disabled=not failures):
    try:
        sid = tuning.start_session(db, run["id"], operation, candidates=int(candidates), dev_seeds=int(dev_seeds),
                                   language=language)
    except tuning.TuningError as e:
        st.error(app_common.md(e))
    else:
        tuning_app.start_tuning(db.path, sid)
        st.session_state["templates_session"] = sid
        st.rerun()
if not failures:
    st.info(f"Nothing to learn from: no {language} child of {operation} was eliminated in this run.")

sessions = tuning_app.sessions_for(db, operation, language)
if not sessions:
    st.stop()
by_session = {s["id"]: s for s in sessions}
app_common.valid_choice("templates_session", list(by_session))
session_id = st.selectbox("Tuning session", list(by_session), key="templates_session",
                          format_func=lambda i: f"{i} · run {by_session[i]['run_id']} · {by_session[i]['status']}")
running = tuning_app.job(f"tune:{session_id}")


@st.fragment(run_every=2.0 if running is not None and running.alive else None)
@app_common.guarded
def session_view() -> None:
    current = tuning_app.job(f"tune:{session_id}")
    alive = current is not None and current.alive
    if st.session_state.get("_tuning_alive") and not alive:
        st.session_state["_tuning_alive"] = False
        st.rerun(scope="app")
    st.session_state["_tuning_alive"] = alive
    result = tuning.summary(db, session_id)
    s = result["session"]
    st.markdown(f"**Status:** {app_common.md(s['status'])} · {app_common.md(s['detail'] or '')}")
    if alive:
        done, total = tuning_app.session_progress(db, s)
        st.progress(done / total if total else 0.0, text=f"{done} of {total} dev children evolved" if total
                    else "Asking the optimizer for candidates ...")
        if st.button("Stop tuning", key="templates_stop"):
            tuning_app.stop_tuning(session_id)
    elif s["status"] not in ("measured", "adopted"):
        if current is not None and current.error:
            st.error(app_common.md(current.error))
        if st.button("Go on with this session", key="templates_resume"):
            tuning_app.start_tuning(db.path, session_id)
            st.rerun()
    if not result["candidates"]:
        return
    st.dataframe(tuning.candidates_table(result["candidates"]), hide_index=True, width="stretch",
                 column_config={"failure_rate": st.column_config.NumberColumn("failure rate", format="percent"),
                                "failure_95_low": st.column_config.NumberColumn("95% low", format="percent"),
                                "failure_95_high": st.column_config.NumberColumn("95% high", format="percent"),
                                "difficulty_gain": st.column_config.NumberColumn("difficulty gain", format="%+.2f")})
    st.caption("failure rate = eliminated / (kept + eliminated) children of one round on the dev seeds (failed calls "
               "and unreadable judges are not counted); difficulty gain = mean change parent → child over kept "
               "children where both were scored. Candidate 0 is the current template.")
    if result["best"] is not None:
        st.success(f"Lowest failure rate: candidate {result['best']}.")
        if tuning.overlaps_baseline(result["candidates"], result["best"]):
            st.warning("Its 95% interval overlaps the current template's: with this many dev children the difference "
                       "may be chance. More dev seeds narrow it.")
    elif s["status"] == "measured":
        st.warning("No candidate failed less often than the current template.")
    for c in result["candidates"]:
        if c["idx"] == 0:
            continue
        with st.expander(app_common.md(f"Candidate {c['idx']} ({c['status']}) · {c['rationale'] or ''}"[:120])):
            if c["reason"]:
                st.error(f"Rejected: {app_common.md(c['reason'])}")
            st.code(c["diff"] or "(no change)", language="diff")
    adoptable = [c["idx"] for c in result["candidates"] if c["status"] == tuning.MEASURED]
    if adoptable and not alive:
        a1, a2, a3 = st.columns([1, 2, 1])
        default = adoptable.index(result["best"]) if result["best"] in adoptable else 0
        idx = a1.selectbox("Adopt candidate", adoptable, index=default, key="templates_adopt_idx")
        name = a2.text_input("Name of the new version", key="templates_adopt_name",
                             placeholder=f"{s['operation']}-{next(c['hash'] for c in result['candidates'] if c['idx'] == idx)}")
        if a3.button("Adopt", key="templates_adopt", type="primary"):
            try:
                version = tuning.adopt(db, session_id, int(idx), name=name.strip() or None)
            except tuning.TuningError as e:
                st.error(app_common.md(e))
            else:
                st.success(f"Saved as {app_common.md(version.label)}. Pick it on the Runs page, or run with "
                           f"{app_common.md_code(f'--template {version.operation}={version.name}')}.")


session_view()

# -- judging two versions ----------------------------------------------------------------------------------------
st.subheader("Judge two versions")
st.caption("Pairs the kept children two versions made from the same parent instruction (a session's dev runs are "
           "natural pairs) and asks the sidebar's model to judge each pair twice, with the answers swapped.")
found = templates.versions(db, operation, language)
by_version = {v.version: v for v in found}
j1, j2 = st.columns(2)
ref_a = j1.selectbox("Version A", list(by_version), key="templates_cmp_a", format_func=lambda h: by_version[h].label)
ref_b = j2.selectbox("Version B", list(by_version), index=min(1, len(by_version) - 1), key="templates_cmp_b",
                     format_func=lambda h: by_version[h].label)
a, b = by_version[ref_a], by_version[ref_b]
items = tuning.version_items(db, a, b) if a.version != b.version else []
comparison = tuning.versions_comparison(a, b)
cmp_job = tuning_app.job(comparison)
st.caption(f"{len(items)} pair(s): {2 * len(items)} calls to **{app_common.md(settings.endpoint_label)}**.")
if st.button("Judge these pairs", key="templates_judge", disabled=not items or bool(cmp_job and cmp_job.alive)
             or bool(settings.problems())):
    tuning_app.start_compare(db.path, settings.run_config(), a, b)
    st.rerun()


@st.fragment(run_every=2.0 if cmp_job is not None and cmp_job.alive else None)
@app_common.guarded
def comparison_view() -> None:
    current = tuning_app.job(comparison)
    if current is not None and current.status == "failed":
        st.error(f"The judge failed: {app_common.md(current.error)}")
    rows = db.judgments(comparison)
    if not rows:
        st.caption("Not judged yet.")
        return
    s = judge.summarize_judgments(rows)
    m = st.columns(4)
    m[0].metric(f"A ({app_common.md(a.name)}) wins", s["win"], f"{s['win_rate']:.0%}", delta_color="off")
    m[1].metric("Ties", s["tie"], f"{s['tie_rate']:.0%}", delta_color="off")
    m[2].metric(f"B ({app_common.md(b.name)}) wins", s["lose"], f"{s['lose_rate']:.0%}", delta_color="off")
    m[3].metric("Unparsed", s["unknown"])
    swap = judge.position_swap_counts(rows)
    st.markdown(f"**Position swap:** the verdict for A was the same in both orders for {swap['same']} of "
                f"{swap['both_read']} pair(s); the order changed it for {swap['flipped']}; {swap['unread']} "
                "unreadable in at least one order.")


comparison_view()
