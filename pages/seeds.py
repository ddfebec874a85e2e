"""Seeds: upload a file, load an example or a saved set, edit the table, see counts, save a named set."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from evolab.app import support as app_support
from evolab.seeds.files import (
    EXAMPLE_SETS,
    SeedFileError,
    load_example,
    load_seeds,
    seeds_from_records,
    seeds_to_records,
)
from ui import common as app_common
from ui import seedcraft as seedcraft_ui
from ui import seedsets as seedsets_ui

db = app_common.store()
st.title("Seeds")
st.caption("The instructions evolution starts from. Fields: instruction (required), input, skill, difficulty.")


def set_table(seeds, source: str) -> None:
    """Replace the table (a new editor key drops the old edits)."""
    st.session_state["seed_records"] = seeds_to_records(seeds)
    st.session_state["seed_source"] = source
    st.session_state["seed_table_version"] = st.session_state.get("seed_table_version", 0) + 1
    st.session_state.pop("seeds", None)  # the new table, not the old one's edits


# The uploader spans the page: in a third of it, its list of file types is cut off at 1400 px.
with st.container(border=True):
    st.markdown("**Upload a file**")
    uploaded = st.file_uploader("JSONL, JSON, CSV or TXT (one instruction a line), parquet or arrow",
                                type=["jsonl", "ndjson", "json", "csv", "tsv", "txt", "parquet", "arrow"],
                                key="seed_upload")
    if uploaded is not None:
        marker = (uploaded.name, uploaded.size, getattr(uploaded, "file_id", None))
        if st.session_state.get("seed_upload_done") != marker:
            try:
                seeds = load_seeds(uploaded.getvalue(), name=uploaded.name)
            except SeedFileError as e:
                st.error(f"{app_common.md(e)}\n\nFix the file and upload it again.")
            else:
                st.session_state["seed_upload_done"] = marker
                set_table(seeds, f"file {uploaded.name}")
example_col, saved_col = st.columns(2)
with example_col.container(border=True):
    st.markdown("**Example sets**")
    example = st.selectbox("Shipped with evolab", list(EXAMPLE_SETS), key="seed_example",
                           format_func=lambda n: {"general": "general (English)",
                                                  "finance": "finance (Korean and English)"}.get(n, n))
    if st.button("Load example", key="seed_load_example"):
        set_table(load_example(example), f"example {example}")
with saved_col.container(border=True):
    st.markdown("**Saved seed sets**")
    names = db.seed_sets()
    if names:
        saved = st.selectbox("In this store", names, key="seed_saved")
        if st.button("Load seed set", key="seed_load_saved"):
            set_table(db.load_seed_set(saved), f"seed set {saved}")
    else:
        st.caption("None saved yet: load or upload seeds, then save them below.")
seedsets_ui.import_panel(set_table)  # other column names, datasets on disk (issue 10 B)

records = st.session_state.get("seed_records")
if not records:
    st.info("No seeds loaded yet: upload a file, or load an example set above.", icon=":material/arrow_upward:")
    st.stop()

editor_key = f"seed_editor_{st.session_state.get('seed_table_version', 0)}"
if editor_key not in st.session_state and st.session_state.get("seeds"):
    # Back from another page: Streamlit dropped the editor's edits, the seeds made from them are kept.
    records = st.session_state["seed_records"] = seeds_to_records(st.session_state["seeds"])

st.subheader(f"Table ({app_common.md(st.session_state.get('seed_source', 'edited'))})")
st.caption("Edit cells, add rows at the bottom, select rows and press Delete to remove them. Rows are numbered "
           "as Lint names them.")
table = pd.DataFrame(records, columns=["instruction", "input", "skill", "difficulty"]
                     + (["source"] if any(r.get("source") for r in records) else []))  # grown seeds' provenance
table.index = pd.RangeIndex(1, len(table) + 1)  # row 1 is the first seed, as Lint's "Row 14 ... row 13" counts
edited = st.data_editor(
    table, key=editor_key, num_rows="dynamic", width="stretch", hide_index=False,
    column_config={
        "_index": st.column_config.NumberColumn("row", disabled=True, help="the row number Lint uses"),
        "instruction": st.column_config.TextColumn("instruction", required=True, width="large"),
        "input": st.column_config.TextColumn("input", width="medium"),
        "skill": st.column_config.TextColumn("skill"),
        "difficulty": st.column_config.NumberColumn("difficulty", min_value=0, max_value=10, step=1),
        "source": st.column_config.TextColumn("source", disabled=True, help="where a generated seed came from"),
    },
)
try:
    seeds = seeds_from_records(edited)
except SeedFileError as e:
    st.error(f"{app_common.md(e)}\n\nCorrect that cell in the table.")
    st.stop()
st.session_state["seeds"] = seeds  # what Step through and Runs offer as "the table on the Seeds page"
if not seeds:
    st.warning("Every row's instruction is empty: type at least one instruction, or load seeds above.")
    st.stop()

counts = app_support.seed_counts(seeds)
m1, m2, m3 = st.columns(3)
m1.metric("Seeds", counts["count"])
m2.metric("With an input", counts["with_input"])
m3.metric("Languages", ", ".join(counts["language"]["language"]))
c1, c2 = st.columns(2)
with c1:
    st.markdown("**By skill**")
    st.dataframe(counts["skill"], hide_index=True, width="stretch")
with c2:
    st.markdown("**By difficulty**")
    st.dataframe(counts["difficulty"], hide_index=True, width="stretch")

seedcraft_ui.panels(db, seeds, set_table)  # coverage, grow, tag (issue 10 A)
seedsets_ui.panels(db, seeds, set_table)  # lint, history (issue 10 B)

st.subheader("Save")
with st.form("save_seed_set", border=False):
    name = st.text_input("Seed set name", key="seed_set_name", placeholder="e.g. finance-v1",
                         help="Saved in the store; saving under an existing name adds a version (History above).")
    note = st.text_input("Note (optional)", key="seed_set_note", placeholder="what changed in this version")
    if st.form_submit_button("Save seed set", type="primary"):
        if not name.strip():
            st.error("Give the seed set a name first.")
        else:
            version = db.save_seed_set(name, seeds, note=note)
            st.session_state["seed_saved_message"] = (f"Saved {len(seeds)} seeds as {name.strip()!r}, version "
                                                      f"{version}. Use them on Step through or Runs.")
            st.rerun()  # so the History tab above lists the new version
if "seed_saved_message" in st.session_state:
    st.success(app_common.md(st.session_state.pop("seed_saved_message")))
