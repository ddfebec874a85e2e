"""The Seeds page's Import, Lint and History panels (issue 10 B): thin Streamlit over evolab.seeds.importing,
evolab.seeds.lint and the store's seed set versions (evolab.seeds.versions diffs them)."""
from __future__ import annotations

import time
from typing import Callable

import pandas as pd
import streamlit as st

from evolab.app import support as app_support
from evolab.schema import Seed
from evolab.seeds import importing as seedimport
from evolab.seeds import lint as seedlint
from evolab.seeds.files import SeedFileError, load_seeds, table_columns
from evolab.seeds.versions import diff_seed_sets
from evolab.store import Store, seed_set_hash
from ui import common as app_common

SetTable = Callable[[list[Seed], str], None]
NONE = "(none)"
MAX_FINDINGS_SHOWN = 60  # each finding is a row of buttons; a longer list is fixed in a few passes


# -- import with a column mapping -------------------------------------------------------------------------

def import_panel(set_table: SetTable) -> None:
    with st.expander("Import a table with other column names, or a dataset on disk (parquet, arrow, a "
                     "save_to_disk folder)"):
        upload = st.file_uploader("CSV, JSON, JSONL, parquet or arrow file",
                                  type=["csv", "tsv", "json", "jsonl", "ndjson", "parquet", "arrow"],
                                  key="seed_import_upload")
        path = ""
        if app_support.seed_dirs():  # only under the folders the server's owner allowed ($EVOLAB_SEED_DIRS)
            path = st.text_input("…or a path on this machine (a file, or a folder made by datasets' save_to_disk)",
                                 key="seed_import_path", placeholder="/data/finance_qa/train",
                                 help=app_support.seed_dirs_note())
        else:
            st.caption(app_support.seed_dirs_note())
        if upload is not None:
            source, name = upload.getvalue(), upload.name
        elif path.strip():
            name = path.strip()
            try:
                source = str(app_support.seed_path(name))
            except SeedFileError as e:
                st.error(app_common.md(e))
                return
        else:
            st.caption("Choose a file or type a path: its columns appear here to map onto the seed fields.")
            return
        try:
            columns = table_columns(source, name)
        except SeedFileError as e:
            st.error(app_common.md(e))
            return
        if not columns:
            st.warning(f"{app_common.md(name)} has no columns to map (a plain text file?): upload it above as it is.")
            return
        guess = seedimport.guess_mapping(columns)
        st.caption(f"Columns in {app_common.md(name)}: {app_common.md(', '.join(map(str, columns)))}")
        cols = st.columns(4)
        mapping: dict[str, str | None] = {}
        for col, field in zip(cols, seedimport.SEED_FIELDS):
            options = list(columns) if field == "instruction" else [NONE, *columns]
            default = guess[field] if guess[field] is not None else options[0]
            choice = col.selectbox(field, options, index=options.index(default), key=f"seed_import_map_{field}",
                                   help="required" if field == "instruction" else "optional")
            mapping[field] = None if choice == NONE else choice
        if st.button("Import with this mapping", key="seed_import_go", type="primary"):
            try:
                seeds = load_seeds(source, name=name, mapping=mapping)
            except SeedFileError as e:
                st.error(f"{app_common.md(e)}\n\nChange the mapping or fix the file.")
                return
            set_table(seeds, f"import {name}")
            st.rerun()


# -- lint and history tabs --------------------------------------------------------------------------------

def panels(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    st.subheader("Check the set")
    lint_tab, history_tab = st.tabs(["Lint", "History"])
    with lint_tab:
        lint_panel(db, seeds, set_table)
    with history_tab:
        history_panel(db, set_table)


def _lint(db: Store, seeds: list[Seed], use_embeddings: bool) -> seedlint.LintReport:
    """The report for this content, kept in the session (embeddings also land in the store's cache)."""
    key = (seed_set_hash(seeds), use_embeddings)
    cached = st.session_state.get("_seed_lint_report")
    if cached and cached[0] == key:
        return cached[1]
    with st.spinner("Linting..."):
        try:
            embedder = app_common.embedder() if use_embeddings else None
        except Exception:  # lint_seeds tries again, says why in its notes, and runs the other checks
            embedder = None
        report = seedlint.lint_seeds(seeds, embedder=embedder, store=db, use_embeddings=use_embeddings)
    st.session_state["_seed_lint_report"] = (key, report)
    return report


def lint_panel(db: Store, seeds: list[Seed], set_table: SetTable) -> None:
    st.caption("Rows to look at before a run: too short or too long, duplicates and near-duplicates (ROUGE-L over "
               "0.7, or embeddings at the model's threshold), Korean and English sentences mixed, missing skill or "
               "difficulty, and rows that are not tasks (a title, a URL). Each fix changes the table above; save "
               "it to keep it.")
    c1, c2 = st.columns([1, 3])
    use_embeddings = c2.checkbox("Embedding near-duplicates", value=True, key="seed_lint_embed",
                                 help="Loads the embedding model the first time.")
    if c1.button("Lint the table", key="seed_lint_go"):
        st.session_state["seed_lint_on"] = True
    if not st.session_state.get("seed_lint_on"):
        return
    report = _lint(db, seeds, use_embeddings)
    for note in report.notes:
        st.caption(app_common.md(note))
    if report.clean:
        st.success(f"No findings ({len(seeds)} seed{'' if len(seeds) == 1 else 's'} checked).")
        return
    kinds = pd.Series([f.kind for f in report.findings]).value_counts()
    st.markdown(f"**{len(report.findings)} findings**: " + ", ".join(f"{k} ×{v}" for k, v in kinds.items()))
    stamp = seed_set_hash(seeds)[:8]  # button keys change with the content, so a stale click does nothing
    bulk = [(kind, fix, [f for f in report.findings if f.kind == kind]) for kind in kinds.index
            for fix in ("merge", "drop") if kinds[kind] > 1
            and all(f.fixes[0] == fix for f in report.findings if f.kind == kind)]
    for col, (kind, fix, group) in zip(st.columns(max(len(bulk), 1)), bulk):
        if col.button(f"{fix.capitalize()} all {len(group)} {kind.replace('_', ' ')} rows",
                      key=f"seed_lint_all_{kind}_{stamp}"):
            set_table(seedlint.apply_fix_all(seeds, group, fix), _linted_source())
            st.rerun()
    for i, finding in enumerate(report.findings[:MAX_FINDINGS_SHOWN]):
        text, actions = st.columns([5, 2], vertical_alignment="center")
        instruction = seeds[finding.row - 1].instruction
        other = ""  # the row a merge keeps, beside the one it drops, so a person sees both before merging
        if finding.other_row and 0 < finding.other_row <= len(seeds):
            other = (f"  \n**Row {finding.other_row}** (kept by a merge): "
                     f":gray[{app_common.md(_short(seeds[finding.other_row - 1].instruction))}]")
        text.markdown(f"**Row {finding.row}** · `{finding.kind}` · {app_common.md(finding.message)}  \n"
                      f":gray[{app_common.md(_short(instruction))}]{other}")
        buttons = actions.columns(len(finding.fixes))
        for col, fix in zip(buttons, finding.fixes):
            if fix == "tag":
                with col.popover("Tag"):
                    _tag_form(seeds, finding, set_table, f"{stamp}_{i}")
            elif col.button(_fix_label(finding, fix), key=f"seed_lint_{fix}_{stamp}_{i}"):
                _apply(seeds, finding, fix, set_table)
    if len(report.findings) > MAX_FINDINGS_SHOWN:
        st.caption(f"{len(report.findings) - MAX_FINDINGS_SHOWN} more findings: fix these, and the rest show up.")


def _fix_label(finding: seedlint.Finding, fix: str) -> str:
    return f"Merge into {finding.other_row}" if fix == "merge" else "Drop"


def _short(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _tag_form(seeds: list[Seed], finding: seedlint.Finding, set_table: SetTable, key: str) -> None:
    seed = seeds[finding.row - 1]
    skills = sorted({s.skill for s in seeds if s.skill})
    skill = st.text_input("Skill", value=seed.skill or "", key=f"seed_lint_skill_{key}",
                          help=("Skills in this set: " + app_common.md(", ".join(skills))) if skills else None)
    difficulty = st.number_input("Difficulty (1-10)", min_value=1, max_value=10, step=1,
                                 value=int(seed.difficulty) if seed.difficulty is not None else None,
                                 key=f"seed_lint_difficulty_{key}")
    if st.button("Apply tag", key=f"seed_lint_tag_{key}"):
        _apply(seeds, finding, "tag", set_table, skill=skill, difficulty=difficulty)


def _apply(seeds: list[Seed], finding: seedlint.Finding, fix: str, set_table: SetTable, **tags) -> None:
    try:
        fixed = seedlint.apply_fix(seeds, finding, fix, **tags)
    except ValueError as e:
        st.error(app_common.md(e))
        return
    set_table(fixed, _linted_source())
    st.rerun()


def _linted_source() -> str:
    source = st.session_state.get("seed_source", "edited")
    return source if source.endswith("(linted)") else f"{source} (linted)"


def history_panel(db: Store, set_table: SetTable) -> None:
    names = db.seed_sets()
    if not names:
        st.caption("No saved seed sets yet: every save below becomes a version here.")
        return
    app_common.valid_choice("seed_history_set", names)
    name = st.selectbox("Seed set", names, key="seed_history_set")
    versions = db.seed_set_versions(name)
    st.dataframe(pd.DataFrame([{
        "version": v["version"], "saved": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"])),
        "seeds": v["seeds"], "note": v["note"] or "", "used by runs": ", ".join(v["runs"]),
        "hash": v["content_hash"][:12]} for v in versions]), hide_index=True, width="stretch")
    numbers = [v["version"] for v in versions]  # newest first
    if st.session_state.get("_seed_history_latest") != (name, numbers[0]):  # another set, or a new save: show
        st.session_state["_seed_history_latest"] = (name, numbers[0])  # what the latest version changed
        st.session_state["seed_history_from"] = numbers[min(1, len(numbers) - 1)]
        st.session_state["seed_history_to"] = st.session_state["seed_history_load_version"] = numbers[0]
    if len(numbers) < 2:
        st.caption("One version so far: save changes to compare versions.")
    else:
        c1, c2 = st.columns(2)
        old = c1.selectbox("From version", numbers, key="seed_history_from")
        new = c2.selectbox("To version", numbers, key="seed_history_to")
        diff = diff_seed_sets(db.load_seed_set_version(name, old), db.load_seed_set_version(name, new))
        st.markdown(f"**v{old} → v{new}**: {diff.summary}")
        if diff.changes:
            st.dataframe(pd.DataFrame(diff.rows()), hide_index=True, width="stretch")
    load_col, pick_col = st.columns([1, 1], vertical_alignment="bottom")
    version = pick_col.selectbox("Version to load", numbers, key="seed_history_load_version")
    if load_col.button("Load this version into the table", key="seed_history_load"):
        set_table(db.load_seed_set_version(name, version), f"seed set {name} v{version}")
        st.rerun()
