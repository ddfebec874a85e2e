"""Review: a person checks the automatic verdicts one node at a time; their verdicts are stored beside the
rules' (evolab.audit.review), and the agreement per rule and scorer is measured on the random audit sample."""
from __future__ import annotations

import streamlit as st

from evolab.app import support as app_support
from evolab.audit import review
from ui import common as app_common

db = app_common.store()
st.title("Review")
st.caption("Look at the nodes the automatic checks are least sure about, and at a random sample of every rule's "
           "verdicts (kept nodes too). Your verdict is stored beside the rules' verdicts, never in place of them; "
           "it changes the data set only if you tick *Apply my verdicts to the data set*. "
           "Keys: **K** keep, **D** discard, **S** skip.")

runs = db.list_runs()
if not runs:
    app_common.no_runs(db)
    st.stop()
by_id = {r["id"]: r for r in runs}
if "review_runs" in st.session_state:
    st.session_state["review_runs"] = [i for i in st.session_state["review_runs"] if i in by_id]
elif app_common.current("run") in by_id:
    st.session_state["review_runs"] = [app_common.current("run")]
else:
    st.session_state["review_runs"] = [runs[0]["id"]]
run_ids = st.multiselect("Runs", list(by_id), key="review_runs", format_func=lambda i: app_support.run_label(by_id[i]))
if not run_ids:
    st.info("Choose at least one run to review.", icon=":material/arrow_upward:")
    st.stop()
if len(run_ids) == 1:
    app_common.remember("run", run_ids[0])

run_defaults = review.run_thresholds(db, run_ids)  # only the thresholds the runs applied (issue 23)
with st.expander("What goes in the queue", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    margin = c1.number_input("Margin around a threshold", 0.0, 5.0, 0.5, 0.1, key="review_margin",
                             help="A score this close to its threshold (either side) goes in the queue.")
    audit_size = c2.number_input("Audit sample per check", 0, 1000, 10, 1, key="review_audit",
                                 help="Random nodes per rule and scorer, kept ones too, for the agreement figures. "
                                      "The same nodes on every reload.")
    quality_min = c3.number_input("Quality threshold (0 = none)", 0.0, 5.0, float(run_defaults.get("quality", 0.0)),
                                  0.5, key="review_quality",
                                  help="Also audit the quality scorer against this threshold (0-5): the run's quality "
                                       "filter threshold when the filter was on, else none unless you set one.")
    difficulty_min = c4.number_input("Difficulty threshold (0 = none)", 0.0, 10.0, 0.0, 1.0, key="review_difficulty",
                                     help="Also audit the difficulty scorer against this threshold (1-10).")
    if "quality" not in run_defaults:
        st.caption("The quality filter was off in these runs: no node was kept or dropped by its quality, so quality "
                   "is not audited unless you set a threshold here.")
thresholds = {metric: float(value) for metric, value in (("quality", quality_min), ("difficulty", difficulty_min))
              if value > 0}
seed = by_id[run_ids[0]]["config"].random_seed
reviews = db.reviews(run_ids)
# The queue is computed once per runs and settings and kept in the session; each verdict advances it (a fragment
# reruns only the node view), so a key press writes one row and reads one node, not the whole run again.
queue_key = (db.path, tuple(run_ids), float(margin), int(audit_size), tuple(sorted(thresholds.items())), seed,
             tuple(app_support.run_version(db, r) for r in run_ids))


@st.cache_data(show_spinner=False, max_entries=8)
def queue_candidates(key: tuple, _db):
    """review.kept_candidates, kept per runs' versions and settings (`key`) in this process, and in the store for
    the next process: a second open, another tab or a restarted server applies its reviews to them without
    reading and checking the whole run again."""
    _, run_ids_, margin_, audit_, thresholds_, seed_, _versions = key
    return review.kept_candidates(_db, run_ids_, margin=margin_, audit_size=audit_, thresholds=dict(thresholds_),
                                  seed=seed_, frames=lambda: app_common.review_frames(_db, list(run_ids_)))


if st.session_state.get("review_queue_key") != queue_key:
    whole = review.order_queue(queue_candidates(queue_key, db), reviews, include_reviewed=True)
    st.session_state["review_queue"] = review.ReviewSession.from_queue(whole)
    st.session_state["review_queue_key"] = queue_key
session: review.ReviewSession = st.session_state["review_queue"]

p1, p2 = st.columns([3, 2], vertical_alignment="bottom")
p1.text_input("Your name (optional)", key="review_name", placeholder="stored with each review")
p2.checkbox("Apply my verdicts to the data set", key="review_apply",
            help="Also keep or discard the node in the data set the export writes (a hand override, as on "
                 "Step through). The rules' verdicts stay stored either way.")


def store_verdict(node_id: str, reasons: list[str], choice: str) -> None:
    """The buttons' callback: runs before the fragment redraws, so the redraw already shows the next node."""
    apply = bool(st.session_state.get("review_apply"))
    try:
        review.record_review(db, node_id, choice, reasons=reasons, reviewer=st.session_state.get("review_name") or "",
                             note=st.session_state.get(f"review_note_{node_id}") or "", apply=apply)
    except (ValueError, KeyError) as e:
        st.session_state["review_error"] = f"The review was not stored: {app_common.md(e)}"
        return
    session.advance(node_id, choice)
    st.session_state["review_stored"] = (f"{choice.capitalize()} stored"
                                         + (" and applied to the data set." if apply and choice != review.SKIP else "."))


@st.fragment
def review_node() -> None:
    error = st.session_state.pop("review_error", None)
    if error:
        st.error(error)
    stored = st.session_state.pop("review_stored", None)
    if stored:
        st.toast(stored)
    item = session.current()
    if item is None:
        st.progress(1.0 if session.total else 0.0, text=f"Reviewed {session.done} of {session.total}")
        if not session.total:
            st.info("Nothing to review in these runs: no unreadable verdicts, no LLM-judge eliminations, no score "
                    "near a threshold, and no audit sample (set its size above 0).", icon=":material/check_circle:")
        else:
            st.success(f"The queue is empty: all {session.total} node(s) reviewed.", icon=":material/check_circle:")
        if stored:  # the last verdict of the queue: redraw the page once, so the agreement below counts it
            st.rerun(scope="app")
        return
    st.progress(session.done / max(1, session.total), text=f"Node {session.done + 1} of {session.total}"
                + (f" · {session.skipped} skipped" if session.skipped else ""))
    node_id = str(item["node_id"])
    detail = app_support.node_detail(db, node_id)
    st.markdown("**In the queue because:** " + "; ".join(review.describe_reason(r) for r in item["reasons"])
                + ("  \n:orange-badge[skipped before]" if item["skipped"] else ""))
    st.text_input("Note (optional)", key=f"review_note_{node_id}")
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    args = (node_id, list(item["reasons"]))
    b1.button("Keep", key="review_keep", shortcut="K", type="primary", width="stretch", icon=":material/check:",
              on_click=store_verdict, args=(*args, review.KEEP))
    b2.button("Discard", key="review_discard", shortcut="D", width="stretch", icon=":material/close:",
              on_click=store_verdict, args=(*args, review.DISCARD))
    b3.button("Skip", key="review_skip", shortcut="S", width="stretch", icon=":material/skip_next:",
              on_click=store_verdict, args=(*args, review.SKIP))
    if detail is None:
        st.warning("This node is no longer in the store.")
        return
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.subheader("Parent")
        if detail.parent is not None:
            app_common.text_block("Parent instruction", detail.parent.instruction)
            if detail.parent.input:
                app_common.text_block("Parent input", detail.parent.input)
        else:
            st.caption("No parent stored.")
    with right:
        st.subheader("Child")
        app_common.show_node(detail)


review_node()

st.subheader("Agreement with a person")
st.caption("As of when the page was drawn: your verdicts count here when the queue ends or the page reloads.")
# Only the reviewed nodes' rows: all the agreement needs, so an open never reads the whole run for it. The figure is
# drawn on demand: its library takes a second or more to load in the browser, and the node above waited for it.
agreement = review.agreement_of(*review.review_frames(db, run_ids, reviewed_only=True), reviews)
figure = not agreement.empty and st.toggle("Show the figure", key="review_agreement_figure",
                                           help="Each check's agreement with its 95% interval, as a figure.")
app_common.agreement_section(db, run_ids, key="review_agreement", link=False, frame=agreement, figure=figure)
