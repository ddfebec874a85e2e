"""The Seeds page's Coverage, Grow and Tag panels (issue 10 A): thin Streamlit over evolab.seeds.craft.

Growing and tagging run as jobs of the app's one background registry (evolab.app.worker.start_grow / start_tag); the
panels poll the store with a fragment, like the Runs page polls a run.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from evolab.analysis import viz
from evolab.app import worker
from evolab.schema import Seed
from evolab.seeds import craft as seedcraft
from evolab.store import Store
from ui import common as app_common

SetTable = Callable[[list[Seed], str], None]


def panels(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    st.subheader("Craft the set")
    coverage_tab, grow_tab, tag_tab = st.tabs(["Coverage", "Grow", "Tag"])
    with coverage_tab:
        coverage_panel(db, seeds)
    with grow_tab:
        grow_panel(db, seeds, set_table)
    with tag_tab:
        tag_panel(db, seeds, set_table)


def _settings_ok() -> bool:
    problems = app_common.settings().problems()
    for p in problems:
        st.error(app_common.md(p))
    return not problems


def _grow_spec(seeds: list[Seed], n: int, **target) -> seedcraft.GrowSpec:
    local = app_common.settings().uses_local_model  # the embedded model: short lists, short replies
    return seedcraft.GrowSpec(seeds, n=int(n), per_call=4 if local else 8, max_tokens=384 if local else 1024,
                              example_input_chars=0 if local else 300, examples=4 if local else 8, **target)


def _start_grow(db: Store, spec: seedcraft.GrowSpec) -> bool:
    """Start growing; False (with the reason shown) when the set or the settings cannot."""
    try:
        seedcraft.check_spec(spec)
    except seedcraft.SeedcraftError as e:
        st.error(app_common.md(e))
        return False
    if not _settings_ok():
        return False
    worker.start_grow(db.path, app_common.settings().run_config(), spec)
    return True


def coverage_panel(db: Store, seeds: list[Seed]) -> None:
    st.caption("How many seeds the set has for each skill and difficulty. Empty cells are crossed out; thin "
               "ones (fewer seeds than the threshold) are marked. Pick a cell and grow seeds for it.")
    c1, c2 = st.columns(2)
    bins = c1.selectbox("Difficulty columns", [10, 5, 3], key="seed_cov_bins",
                        format_func=lambda b: {10: "1 to 10", 5: "5 bins (1-2, 3-4, ...)", 3: "3 bins (easy, medium, hard)"}[b])
    thin = c2.number_input("Thin below", min_value=1, max_value=100, value=2, step=1, key="seed_cov_thin",
                           help="A cell with fewer seeds than this (and at least one) is thin.")
    frame = seedcraft.coverage_frame(seeds, bins=int(bins), thin=int(thin))
    st.plotly_chart(viz.coverage_figure(frame, thin=int(thin)), key="seed_coverage_chart", width="stretch")
    gaps = seedcraft.gaps(frame)
    if gaps.empty:
        st.info("No empty or thin cell with a skill and a difficulty: tag the seeds first (Tag tab) if they have "
                "none." if (frame["state"] != "ok").any() else "Every cell has enough seeds.")
        return
    labels = [seedcraft.cell_label(r) for r in gaps.to_dict("records")]
    app_common.valid_choice("seed_cov_cell", labels)
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Cell to grow", labels, key="seed_cov_cell")
    n = c2.number_input("New seeds", min_value=1, max_value=500, value=5, step=1, key="seed_cov_n")
    if c3.button("Grow here", key="seed_grow_here", type="primary",
                 disabled=_grow_running(db)):
        row = gaps.iloc[labels.index(chosen)]
        if _start_grow(db, _grow_spec(seeds, n, target_skill=str(row["skill"]),
                                      target_difficulty=str(row["difficulty"]))):
            st.rerun()
    st.caption("Progress and the new seeds are on the Grow tab; their skill and difficulty are proposals you "
               "accept on the Tag tab.")


def _grow_running(db: Store) -> bool:
    job = worker.grow_job_for(db.path)
    return job is not None and job.alive


def grow_panel(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    settings = app_common.settings()
    st.caption(f"Self-Instruct's recipe: each call to **{app_common.md(settings.endpoint_label)}** shows 8 seeds (6 of yours, 2 "
               "generated) and asks for new ones in the same domain and language; a new seed is kept only when its "
               "ROUGE-L to every seed is below 0.7 and it is no embedding near-duplicate. Every candidate is stored; "
               "starting again with the same seeds and settings continues where it stopped.")
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    n = c1.number_input("New seeds", min_value=1, max_value=5000, value=20, step=1, key="seed_grow_n")
    if c2.button("Grow", key="seed_grow_start", type="primary", disabled=_grow_running(db)):
        if _start_grow(db, _grow_spec(seeds, n)):
            st.rerun()
    grow_progress(db, seeds, set_table)


def grow_progress(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    job = worker.grow_job_for(db.path)

    @st.fragment(run_every=1.0 if job is not None and job.alive else None)
    @app_common.guarded
    def live() -> None:
        current = worker.grow_job_for(db.path)
        if current is None:
            st.caption("Nothing grown in this session yet.")
            return
        alive = current.alive
        if st.session_state.get("_grow_alive") and not alive:
            st.session_state["_grow_alive"] = False
            st.rerun(scope="app")
        st.session_state["_grow_alive"] = alive
        grow_id = current.progress.get("job_id")
        if grow_id is None:
            st.caption("Starting...")
            return
        p = db.grow_progress(grow_id)
        want = int((db.grow_job(grow_id) or {}).get("config", {}).get("n") or 1)
        status = current.status if not alive else "running"
        st.progress(min(1.0, p["kept"] / want), text=f"{status}: {min(p['kept'], want)} of {want} new seeds kept "
                                                     f"after {p['calls']} calls")
        if alive and st.button("Stop", key="seed_grow_stop"):
            current.stop_event.set()
        if current.status == "failed":
            st.error(f"Growing failed: {app_common.md(current.error)}. Check the endpoint, model and key in the sidebar, then grow "
                     "again: what was kept is stored and the job continues.")
        elif not alive and current.result is not None and current.result.message:
            st.warning(app_common.md(current.result.message))
        if p["by_reason"]:
            st.caption("Rejected: " + ", ".join(f"{seedcraft.REASONS.get(k, k)} ×{v}" for k, v in p["by_reason"].items()))
        frame = seedcraft.candidates_frame(db, grow_id)
        st.dataframe(frame[["call_index", "status", "instruction", "input", "why", "detail"]].head(200),
                     hide_index=True, width="stretch", key="seed_grow_candidates",
                     column_config={"instruction": st.column_config.TextColumn(width="large")})
        new = seedcraft.new_seeds_for_table(seeds, seedcraft.kept_seeds(db, grow_id, want))
        if not alive and new and st.button(f"Add {len(new)} kept seeds to the table", key="seed_grow_add",
                                           type="primary"):
            set_table(list(seeds) + new, f"grown ({len(new)} new)")
            st.rerun(scope="app")

    live()


def tag_panel(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    missing = sum(seedcraft.needs_tags(s) for s in seeds)
    grown = seedcraft.grown_proposals(seeds)
    st.caption(f"{missing} seed(s) lack a skill or a difficulty; {len(grown)} grown seed(s) carry proposed tags. "
               "The model picks the skill from the set's own list (or proposes a new one) and rates difficulty 1-10 "
               "with WizardLM's question; nothing is changed until you accept it.")
    job = worker.tag_job_for(db.path)
    if st.button("Propose tags", key="seed_tag_start", disabled=not missing or bool(job and job.alive)):
        if _settings_ok():
            worker.start_tag(db.path, app_common.settings().run_config(), seeds)
            st.session_state["seed_tag_for"] = [s.to_dict() for s in seeds]
            st.rerun()

    @st.fragment(run_every=1.0 if job is not None and job.alive else None)
    @app_common.guarded
    def proposals() -> None:
        current = worker.tag_job_for(db.path)
        alive = current is not None and current.alive
        if st.session_state.get("_tag_alive") and not alive:
            st.session_state["_tag_alive"] = False
            st.rerun(scope="app")
        st.session_state["_tag_alive"] = alive
        if alive:
            st.progress(0.5, text="Asking the model...")
            return
        if current is not None and current.status == "failed":
            st.error(f"Tagging failed: {app_common.md(current.error)}. Check the endpoint, model and key in the sidebar.")
        asked = (current.result or []) if current is not None and current.status == "finished" else []
        if asked and st.session_state.get("seed_tag_for") != [s.to_dict() for s in seeds]:
            st.warning("The table changed since the tags were proposed: propose them again.")
            asked = []
        rows = asked + [g for g in grown if g.index not in {p.index for p in asked}]
        if not rows:
            return
        frame = seedcraft.proposals_frame(seeds, rows)
        edited = st.data_editor(
            frame, key="seed_tag_editor", hide_index=True, width="stretch",
            disabled=["row", "instruction", "proposed", "new skill", "detail"],
            column_config={
                "instruction": st.column_config.TextColumn(width="large"),
                "skill": st.column_config.TextColumn("skill", help="change it before accepting if it is wrong"),
                "difficulty": st.column_config.NumberColumn("difficulty", min_value=1, max_value=10, step=1),
                "new skill": st.column_config.CheckboxColumn(help="not in the set's skill list: a proposal"),
                "accept": st.column_config.CheckboxColumn(help="apply this row's skill and difficulty"),
            })
        c1, c2 = st.columns(2)
        accept_all = c1.button("Accept all", key="seed_tag_accept_all")
        if c2.button("Apply accepted", key="seed_tag_apply", type="primary") or accept_all:
            reviewed = edited.assign(accept=True) if accept_all else edited
            try:
                tagged = seedcraft.apply_tags(seeds, pd.DataFrame(reviewed))
            except seedcraft.SeedcraftError as e:
                st.error(f"{app_common.md(e)} Correct it in the table.")
                return
            if current is not None:
                current.result = None  # applied: the table holds them now
            set_table(tagged, f"tagged ({int(reviewed['accept'].sum())} rows accepted)")
            st.rerun(scope="app")

    proposals()
