"""evolab workbench: `streamlit run app.py`. The frame only: pages, the shared sidebar settings."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st  # noqa: E402

from evolab.llm.openai_backend import restrict_key_names  # noqa: E402
from ui import common as app_common  # noqa: E402

# Every key variable this process reads for a run, judge or tuning session follows the app's allow-list
# (key_env_allowed), whatever a store's run config says (someone else's store, resumed here).
restrict_key_names()

app_common.ensure_frame()
st.set_page_config(page_title="evolab", page_icon="🧬", layout="wide")
app_common.load_plugins()  # before the pages: their lists of operations, rules and scorers

pages = {
    "Prepare": [
        st.Page("pages/seeds.py", title="Seeds", icon=":material/grass:", default=True),
    ],
    "Evolve": [
        st.Page("pages/evolve.py", title="Step through", icon=":material/footprint:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/play_circle:"),
        st.Page("pages/templates.py", title="Templates", icon=":material/tune:"),
    ],
    "Analyse": [
        st.Page("pages/lineage.py", title="Lineage", icon=":material/account_tree:"),
        st.Page("pages/drift.py", title="Drift", icon=":material/trending_up:"),
        st.Page("pages/diversity.py", title="Diversity", icon=":material/scatter_plot:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
    ],
    "Take away": [
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
    ],
}
page = st.navigation(pages)
app_common.keep_widget_state()
app_common.sidebar()
app_common.warm_up()
try:
    page.run()
except Exception as e:  # st.stop / st.rerun are BaseExceptions and pass through
    app_common.unexpected_error(e)
