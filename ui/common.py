"""Streamlit pieces every page shares: the store, the sidebar settings, run and node pickers, the
node view and the cached tables. The logic behind them lives in `evolab.app.support` (no Streamlit).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app.py` from another folder
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from evolab.analysis import frames as analysis
from evolab.app import jobs  # noqa: E402
from evolab.app import support as app_support  # noqa: E402
from evolab.app.support import Settings  # noqa: E402
from evolab.engine import estimate, plugins  # noqa: E402
from evolab.engine.scoring import SCORERS  # noqa: E402
from evolab.store import Store  # noqa: E402
from evolab.text import markup  # noqa: E402

STATUS_BADGE = {"seed": "gray", "kept": "green", "eliminated": "red", "failed": "orange", "pending": "yellow"}
RUN_STATUS_BADGE = {"running": "blue", "finished": "green", "paused": "violet", "stopped": "orange",
                    "failed": "red", "budget": "orange", "created": "gray", "interactive": "gray"}
PAGES = {
    "seeds": "pages/seeds.py", "evolve": "pages/evolve.py", "runs": "pages/runs.py",
    "lineage": "pages/lineage.py", "drift": "pages/drift.py", "diversity": "pages/diversity.py",
    "compare": "pages/compare.py", "export": "pages/export.py",
    "review": "pages/review.py",
    "templates": "pages/templates.py",
}


# Widgets whose values should survive a visit to another page (Streamlit forgets the state of widgets
# that a run does not draw). Buttons, uploaders and data editors cannot be set this way.
KEEP_ACROSS_PAGES = (
    "run_source", "run_name", "run_limit", "run_rounds", "run_fanout", "run_concurrency", "run_budget",
    "run_random_seed", "run_language", "run_max_respond", "run_max_evolve",
    "run_equal_judge", "run_dedup", "run_quality_filter", "run_quality_min", "run_rpm", "run_tpm",
    "run_adaptive_ops", "drift_ops_split",
    "evolve_source", "evolve_session_name", "evolve_op", "seed_example", "seed_set_name",
    "seed_cov_bins", "seed_cov_thin", "seed_cov_n", "seed_grow_n",
    "drift_which", "diversity_color", "diversity_threshold", "compare_mode",
    "export_format", "export_status", "export_seeds", "export_rules",
    "export_checked", "run_check_answers",
    "review_runs", "review_margin", "review_audit", "review_quality", "review_difficulty", "review_name",
    "review_apply", "review_agreement_figure",
    "templates_op", "templates_lang", "templates_candidates", "templates_dev_seeds",
)


def keep_widget_state() -> None:
    """Called by app.py at the start of every full run, before the page draws its widgets. Each value
    is mirrored in a plain session key (never cleaned up) and written back through the Session State
    API, which a widget drawn later in the run honours; Streamlit alone drops the state of widgets a
    run does not draw, and can lose it when a page change interrupts a fragment's rerun."""
    per_scorer = tuple(f"{prefix}_{name}" for name in SCORERS for prefix in ("run_scorer", "export_min"))
    for key in KEEP_ACROSS_PAGES + per_scorer:
        mirror = f"_kept_{key}"
        if key in st.session_state:
            st.session_state[mirror] = st.session_state[key]
        if mirror in st.session_state:
            st.session_state[key] = st.session_state[mirror]


def forget_when_changed(key: str, tag: str) -> None:
    """Forget a widget's remembered value (and its kept copy) when what it belongs to changes, so it
    starts again from its default: the near-duplicate slider when the run's embedding model changes."""
    tag_key = f"_tag_{key}"
    if st.session_state.get(tag_key) != tag:
        st.session_state.pop(key, None)
        st.session_state.pop(f"_kept_{key}", None)
        st.session_state[tag_key] = tag


def valid_choice(key: str, options: list) -> None:
    """Drop a remembered selectbox value that is no longer among the options (e.g. a deleted seed set)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def md(text: object) -> str:
    """Text from a model, a seed file, the store or a user, for any call that renders Markdown (st.markdown,
    st.caption, the alerts, and the labels and help of buttons, expanders, checkboxes, radios, tabs and metrics):
    it shows as exactly its characters, never as an image, a link, emphasis or HTML. Selectbox and multiselect
    options are plain text already and need nothing."""
    return markup.plain(text)


def md_code(text: object) -> str:
    """Such a text as an inline code span it cannot end early (a path, an id, a command)."""
    return markup.code(text)


# -- store and settings ------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> Store:
    return Store(path)


SETTINGS_META_KEY = "app_settings"


def settings() -> Settings:
    """The session's settings; a new session (a reload) starts from what the store remembers."""
    if "settings" not in st.session_state:
        s = Settings()
        try:
            saved = json.loads(_open_store(s.db_path).get_meta(SETTINGS_META_KEY) or "{}")
        except Exception:  # an unreadable store is reported by store(); start from the defaults
            saved = {}
        for key in ("base_url", "model", "api_key_env", "structured"):
            if isinstance(saved.get(key), str):
                setattr(s, key, saved[key])
        st.session_state["settings"] = s
    return st.session_state["settings"]


def _save_settings(s: Settings) -> None:
    """The store remembers the endpoint it was used with (the key variable's name, never the key)."""
    _open_store(s.db_path).set_meta(SETTINGS_META_KEY, json.dumps(
        {"base_url": s.base_url, "model": s.model, "api_key_env": s.api_key_env, "structured": s.structured}))


def ensure_frame() -> None:
    """Streamlit runs the first script of a server process in its old `pages/` folder mode (the
    folder exists): a first visit to /runs would run pages/runs.py alone, without app.py's navigation
    and sidebar, and a first visit to / would nest two navigations. The mode ends once `st.navigation`
    has run; end it now and rerun, so every page is framed by app.py. (Naming the folder anything
    but `pages/` would make this unnecessary.)"""
    try:  # a private Streamlit flag: an upgrade may move it, and then the app must still start
        PagesManager = _pages_manager()
        legacy_mode = PagesManager.uses_pages_directory
    except (ImportError, AttributeError) as e:
        _warn_once("ensure_frame", "Streamlit's pages-folder flag (PagesManager.uses_pages_directory) is gone "
                   f"({type(e).__name__}: {e}); a first visit may show a page without the sidebar until a "
                   "reload. Renaming pages/ would remove the need for this flag.")
        return
    if legacy_mode:
        PagesManager.uses_pages_directory = False
        st.rerun()


def _pages_manager() -> type:
    from streamlit.runtime.pages_manager import PagesManager

    return PagesManager


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """A warning in the server's log, once per process (not on every page run)."""
    if key not in _WARNED:
        _WARNED.add(key)
        logging.getLogger("evolab.app").warning(message)


def store() -> Store:
    """The store named in the sidebar; a store that cannot be opened stops the page with what to do.
    Every page calls this first."""
    ensure_frame()
    path = settings().db_path
    try:
        return _open_store(path)
    except Exception as e:  # a folder we cannot write, a newer schema, not a database
        st.error(f"Cannot open the store {md(repr(path))}: {md(e)}. Choose another file in the sidebar "
                 "(Store) and press Use these settings.")
        st.stop()


def load_plugins() -> None:
    """Outside plugins (EVOLAB_PLUGINS, installed entry points), once per server process; a plugin that failed
    to load is named in the sidebar and everything else works."""
    plugins.load_plugins()
    for error in plugins.plugin_errors():
        st.sidebar.warning(md(error), icon=":material/extension_off:")


def sidebar() -> None:
    """Endpoint, model, key variable name, store path; the embedded model's status."""
    s = settings()
    for key, value in (("set_db", s.db_path), ("set_url", s.base_url), ("set_model", s.model),
                       ("set_key_env", s.api_key_env), ("set_structured", s.structured)):
        st.session_state.setdefault(key, value)
    st.secrets.load_if_toml_exists()  # root-level secrets become environment variables of this process
    with st.sidebar:
        st.subheader("Settings")
        with st.form("settings_form", border=False):
            st.text_input("Endpoint URL", key="set_url", placeholder="empty: the embedded local model",
                          help="Any OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or a vLLM / "
                               "Ollama / llama.cpp server. Leave empty for the embedded local model.")
            st.text_input("Model", key="set_model", placeholder="e.g. gpt-4o-mini",
                          help="The model name the endpoint knows. Ignored for the embedded model.")
            st.text_input("Key variable (its name, not the key)", key="set_key_env",
                          placeholder="e.g. OPENAI_API_KEY",
                          help="The NAME of the environment variable or Streamlit secret that holds the API "
                               "key. The key itself is never written to the store or anywhere else.")
            st.selectbox("Structured output", ["auto", "on", "off"], key="set_structured",
                         help="Ask the judges and scorers for a JSON-schema reply. auto: find out once per "
                              "endpoint and model whether it can, and remember; on: require it; off: read "
                              "free text. Unreadable replies are retried once, then marked unreadable.")
            st.text_input("Store (SQLite file)", key="set_db",
                          help="Every run, node, call and score is kept here. Default: $EVOLAB_DB or evolab.db.")
            submitted = st.form_submit_button("Use these settings", type="primary")
        if submitted:
            new = Settings(db_path=st.session_state["set_db"].strip() or app_support.default_db_path(),
                           base_url=st.session_state["set_url"].strip(), model=st.session_state["set_model"].strip(),
                           api_key_env=st.session_state["set_key_env"].strip(),
                           structured=st.session_state["set_structured"])
            problems = new.problems()
            if problems:
                for p in problems:
                    st.error(md(p))
            else:
                if new.db_path != s.db_path:  # another store: its runs are not the remembered ones
                    remember("run", None)
                    remember("node", None)
                st.session_state["settings"] = s = new
                try:
                    _save_settings(new)
                except Exception as e:  # the settings still apply to this session
                    st.warning(f"Could not remember these settings in {md(new.db_path)}: {md(e)}")
                st.success("Settings in use.")
        st.caption(f"In use: **{md(s.endpoint_label)}** · store {md_code(s.db_path)}")
        try:
            st.caption(f"Structured output: {md(s.structured_status(_open_store(s.db_path)))}")
        except Exception:  # an unreadable store is reported by store()
            pass
        if s.uses_local_model:
            _local_model_box()
        else:
            st.caption(f"Key: {md(s.key_status())}")


def _local_model_box() -> None:
    from evolab.llm import local

    st.info(local.NOTICE, icon=":material/info:")
    st.caption(f"With it, replies are capped at {app_support.LOCAL_TOKEN_LIMITS['max_tokens_respond']} tokens so "
               "a step takes seconds.")
    server = local.local_server()
    status = server.status()
    st.caption(f"Embedded model: {status}")
    c1, c2 = st.columns(2)
    if status == "stopped":
        if c1.button("Start it", key="local_start", help="Runs and steps start it when needed, too."):
            with st.spinner("Starting the embedded model..."):
                try:
                    server.ensure()
                except Exception as e:  # LocalModelError: its message says what to do
                    st.error(md(e))
                else:
                    st.rerun()
    elif server.started_here:
        if c2.button("Stop it", key="local_stop"):
            server.stop()
            st.rerun()


# -- the current run and node ------------------------------------------------------------------------
def current(name: str) -> str | None:
    """A selection remembered in the URL (so a reload returns to it) and in the session (so it
    follows the user from page to page)."""
    value = st.query_params.get(name)
    return value or st.session_state.get(f"current_{name}")


def remember(name: str, value: str | None) -> None:
    if value:
        st.query_params[name] = value
        st.session_state[f"current_{name}"] = value
    else:
        st.query_params.pop(name, None)
        st.session_state.pop(f"current_{name}", None)


def pick_run(db: Store, *, key: str, label: str = "Run", runs: list[dict] | None = None,
             remember_as: str = "run") -> dict | None:
    """A run selectbox that starts on the remembered run; None (and nothing drawn) when there is none."""
    runs = db.list_runs() if runs is None else runs
    if not runs:
        return None
    by_id = {r["id"]: r for r in runs}
    ids = list(by_id)
    wanted = current(remember_as)
    if key in st.session_state and st.session_state[key] not in by_id:
        del st.session_state[key]  # the remembered run is gone (another store, deleted)
    if wanted in by_id and key not in st.session_state:
        st.session_state[key] = wanted
    run_id = st.selectbox(label, ids, key=key, format_func=lambda i: app_support.run_label(by_id[i]))
    remember(remember_as, run_id)
    return by_id[run_id]


def select_widget_value(widget_key: str, value: str) -> None:
    """Make a selectbox show `value` on the next run (a widget's value can only change before it is drawn)."""
    st.session_state[f"_next_{widget_key}"] = value


def apply_pending(widget_key: str, options: list[str]) -> None:
    pending = st.session_state.pop(f"_next_{widget_key}", None)
    if pending is not None and pending in options:
        st.session_state[widget_key] = pending


def new_chart_selection(chart_key: str) -> str | None:
    """The node id a plotly click selected since the last call (None when the selection is unchanged)."""
    node_id = app_support.selected_node_id(st.session_state.get(chart_key))
    last_key = f"_handled_{chart_key}"
    if node_id and node_id != st.session_state.get(last_key):
        st.session_state[last_key] = node_id
        return node_id
    if not node_id:
        st.session_state.pop(last_key, None)
    return None


def status_badge(status: str, rule: str | None = None) -> str:
    color = STATUS_BADGE.get(status) or RUN_STATUS_BADGE.get(status, "gray")
    text = status + (f": {rule}" if rule else "")
    return f":{color}-badge[{md(text)}]"


# -- cached tables -------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def _nodes_frame(db_path: str, run_id: str, version: tuple) -> pd.DataFrame:
    return analysis.nodes_frame(_open_store(db_path), run_id)


def nodes_frame(db: Store, run_id: str) -> pd.DataFrame:
    """analysis.nodes_frame, cached until the run's nodes or scores change."""
    return _nodes_frame(db.path, run_id, app_support.run_version(db, run_id))


@st.cache_resource(show_spinner=False)
def embedder():
    """The embedding model (EVOLAB_EMBED_* variables, else the packaged all-MiniLM-L6-v2), loaded once."""
    from evolab.embeddings import embed

    return embed.embedder_from_env()


@st.cache_resource(show_spinner=False, max_entries=32)
def _map_embedder(db_path: str, run_id: str, version: tuple):
    return analysis.map_embedder(_nodes_frame(db_path, run_id, version))


def map_embedder(db: Store, run_id: str):
    """The embedder of this run's map (`analysis.map_embedder`: the one the report and the warm-up after
    a CLI run use too, so their cached vectors and map are found here)."""
    return _map_embedder(db.path, run_id, app_support.run_version(db, run_id))


@st.cache_data(show_spinner=False, max_entries=8)
def _embedding_map(db_path: str, run_id: str, version: tuple, embedder_name: str):
    """(frame with x, y and duplicate marks, vectors): embeddings and UMAP cached per run version."""
    return analysis.embedding_map(_open_store(db_path), run_id, _map_embedder(db_path, run_id, version),
                                  nodes=_nodes_frame(db_path, run_id, version))


def prepare_map(db: Store, run_id: str) -> None:
    """Do what the run's map still needs (embedding k of n, fitting the map) with a progress bar that
    says which stage it is in; nothing shows when the caches already hold it (e.g. warmed after a run)."""
    nodes = nodes_frame(db, run_id)
    emb = map_embedder(db, run_id)
    work = analysis.map_work(db, run_id, nodes, emb)
    if not (work["to_embed"] or work["to_fit"]):
        return
    with st.status(f"Preparing the map of {len(nodes):,} instructions ({emb.name})...", expanded=True) as box:
        bar = st.progress(0.0, text="Starting")

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "embedding":
                bar.progress(done / total if total else 1.0, text=f"Embedding instruction {done:,} of {total:,}")
            else:
                bar.progress(1.0, text=f"Fitting the map (UMAP) on {total:,} instructions")

        analysis.embedding_map(db, run_id, emb, nodes=nodes, progress=progress)
        box.update(label="Map ready", state="complete", expanded=False)


@st.cache_data(show_spinner=False, max_entries=16)
def _diversity(db_path: str, run_id: str, version: tuple, embedder_name: str, threshold: float):
    from evolab.embeddings import novelty

    frame, vectors = _embedding_map(db_path, run_id, version, embedder_name)
    if threshold != frame.attrs.get("threshold"):  # the map marks at the model's own threshold
        frame = novelty.mark_duplicates(frame, vectors, threshold)
    return (frame, novelty.diversity_frame(frame, vectors, threshold=threshold),
            novelty.near_duplicate_pairs(frame, vectors, threshold, max_pairs=500))


def diversity(db: Store, run_id: str, threshold: float):
    """(map frame with duplicate marks at `threshold`, numbers per round, near-duplicate pairs), cached."""
    return _diversity(db.path, run_id, app_support.run_version(db, run_id), map_embedder(db, run_id).name,
                      float(threshold))


@st.cache_resource(show_spinner=False)
def warm_up() -> bool:
    """Load the embedding model and pay UMAP's JIT once per server process, in the background, so the
    Diversity page opens fast. EVOLAB_APP_WARMUP=0 switches it off (tests)."""
    if os.environ.get("EVOLAB_APP_WARMUP", "1") == "0":
        return False

    def work(job: jobs.Job) -> None:
        try:
            from evolab.embeddings import embed  # torch and umap: loaded here, in the background

            embedder().encode(["warm up"])
            embed.warm_umap()
        except Exception:  # the Diversity page reports real problems when it needs the model
            pass

    jobs.start("warm-up", "embedder", work)  # one of the app's background jobs (evolab/app/jobs.py)
    return True


@st.cache_data(show_spinner=False, ttl=60, max_entries=16)
def _call_timing(db_path: str, config_key: str, _config):
    return estimate.observed_timing(estimate.endpoint_calls(_open_store(db_path), _config), _config)


def call_timing(db: Store, config):
    """How long calls take at the config's endpoint, from its stored calls (None: none stored yet), re-read at most
    once a minute (the Runs page reruns on every widget change)."""
    return _call_timing(db.path, f"{config.base_url or ''}|{config.model}", config)


# -- views ---------------------------------------------------------------------------------------------
def text_block(label: str, text: str | None, *, empty: str = "(empty)", exact: bool = False) -> None:
    """A labelled text that wraps. `exact`: monospace, for prompts and raw model output; otherwise the
    body font (Korean reads better) with no Markdown parsing, so every character shows as it is."""
    st.markdown(f"**{md(label)}**")
    if text is None or not str(text).strip():
        st.caption(empty)
    elif exact:
        st.code(str(text), language=None, wrap_lines=True)
    else:
        with st.container(border=True):
            st.text(str(text), width="stretch")


def show_node(detail: app_support.NodeDetail, *, expanded: bool = False) -> None:
    """One node as the step-through and lineage pages show it: instruction, input, response, the exact
    prompt and raw output, every rule's verdict, the scores and the calls it took."""
    n = detail.node
    st.markdown(f"{status_badge(n.status, n.rule)} round **{n.round}** · operation **{md(n.operation)}**"
                + (f" · skill {md(n.skill)}" if n.skill else "") + f" · language {md(n.language)} · {md_code(n.id)}")
    if n.detail:  # a judge's excerpt, a review note: model and user text
        st.caption(md(n.detail))
    text_block("Instruction", n.instruction)
    if n.input:
        text_block("Input", n.input)
    text_block("Response", n.response,
               empty="No response: " + ("a cheap check eliminated it before answering." if n.round else
                                        "seeds are answered in batch runs only."))
    if n.round > 0:
        with st.expander("Exact prompt sent to the evolver", expanded=expanded):
            text_block("Prompt" + (f" ({n.template} v{n.template_version})" if n.template else ""), n.prompt,
                       exact=True)
        with st.expander("Raw output of the evolver", expanded=expanded):
            text_block("Raw output", n.raw_output, exact=True)
    st.markdown("**Rule verdicts**")
    if detail.verdicts.empty:
        st.caption("No rule verdicts: seeds are not checked." if n.round == 0 else
                   "No verdicts stored (the step failed before the checks).")
    else:
        verdict_table(app_support.verdict_rows(detail.verdicts, n.status, n.rule))
    st.markdown("**Scores**")
    if detail.scores.empty:
        st.caption("No scores yet.")
    else:
        llm = detail.scores[~detail.scores["metric"].str.startswith("cx_")]
        if not llm.empty:  # one line that wraps: metric columns cut long names ("truncated_…") at 1400 px
            st.markdown(" · ".join(f"{md(row['metric'])} **{score_text(row['value'])}**"
                                   for row in llm.to_dict("records")))
            st.caption("judged by " + ", ".join(md(j) for j in dict.fromkeys(llm["judge"])))
        with st.expander("All scores (LLM and heuristic complexity)"):  # static tables wrap in a narrow column
            scores = detail.scores.assign(value=detail.scores["value"].map(score_text))
            st.table(literal_cells(scores).style.hide(axis="index"))
    if not detail.calls.empty:
        with st.expander(f"LLM calls of this step ({len(detail.calls)})"):
            quiet = [c for c in ("reasoning tokens", "error") if not detail.calls[c].astype(bool).any()]
            calls = detail.calls.drop(columns=quiet)  # columns with nothing to say left out
            st.table(literal_cells(calls).style.hide(axis="index").format({"cost USD": "${:.4f}",
                                                                            "latency s": "{:.2f}"}))


def literal_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame for st.table, which renders each cell as Markdown: every text cell (model text, judges' details) shows
    as exactly its characters (`md`), never as a link or an image."""
    return frame.map(lambda v: md(v) if isinstance(v, str) else v)


def score_text(value: object) -> str:
    return "unparsed" if value is None or pd.isna(value) else f"{value:g}"


VERDICT_COLORS = {True: "#e8f5e9", False: "#fdecea", None: "#fff4e5"}  # passed, failed, unreadable


def verdict_table(rows: pd.DataFrame) -> None:
    """`app_support.verdict_rows` as a static table that wraps its text (nothing is cut off): failed rows red,
    unreadable ones amber, passed ones green, the deciding rule first and in bold."""
    shown = rows.drop(columns="outcome")
    outcomes = list(rows["outcome"])

    def row_style(row: pd.Series) -> list[str]:
        outcome = outcomes[row.name]
        style = f"background-color: {VERDICT_COLORS[outcome]}"
        if row["verdict"].endswith(app_support.DECIDED_MARK):
            style += "; font-weight: 700"
        return [style] * len(row)

    st.table(literal_cells(shown).style.apply(row_style, axis=1).hide(axis="index"))


@st.cache_data(show_spinner=False, max_entries=8)
def _review_frames(db_path: str, run_ids: tuple[str, ...], versions: tuple):
    from evolab.audit import review

    return review.review_frames(_open_store(db_path), list(run_ids))


def review_frames(db: Store, run_ids: list[str]):
    """review.review_frames, cached until a run's nodes or scores change (a review alone changes neither)."""
    return _review_frames(db.path, tuple(run_ids), tuple(app_support.run_version(db, r) for r in run_ids))


def agreement_section(db: Store, run_ids: list[str], *, key: str, link: bool = True,
                      frame: pd.DataFrame | None = None, figure: bool = True) -> None:
    """How often a person agreed with each rule and scorer on the Review page's audit sample (Drift, Compare,
    Review): the figure, the counts with 95% Wilson intervals, and which samples are too small to say anything.
    `frame`: the agreement already computed (`review.agreement_of`); `figure`: False leaves the figure out."""
    from evolab.audit import review

    if frame is None:
        frame = review.agreement_of(*review_frames(db, run_ids), db.reviews(run_ids))
    small = frame[frame["too_small"]] if not frame.empty else frame
    if not small.empty:
        st.warning(review.agreement_note(frame), icon=":material/warning:")
    else:
        st.caption(review.agreement_note(frame))
    if frame.empty:
        if link:
            st.page_link(PAGES["review"], label="Review", icon=":material/rate_review:")
        return
    if figure:
        from evolab.analysis import viz

        st.plotly_chart(viz.agreement_figure(frame, title=""), key=key)
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="percent") for c in ("share", "low", "high")})


UNEXPECTED = "This page hit an unexpected problem"


def unexpected_error(error: Exception) -> None:
    """A bug or an environment problem no page foresaw: say so in words, keep the traceback in the
    server's log, never on the page."""
    import logging

    logging.getLogger("evolab.app").exception("page failed")
    st.error(f"{UNEXPECTED}: {type(error).__name__}: {md(error)}\n\nEverything finished so far is safe in the "
             f"store ({md(settings().db_path)}). Reload the page; if it happens again, report it with the server "
             "log, which has the full traceback.", icon=":material/error:")


def guarded(func):
    """For fragment bodies: an exception there would escape app.py's guard (fragments rerun alone)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as e:
            unexpected_error(e)

    return wrapper


def no_runs(db: Store, what: str = "runs") -> None:
    st.info(f"No {what} in {md_code(db.path)} yet. Load seeds on the Seeds page, then start a run on the Runs page "
            "(or step through one seed on Step through).", icon=":material/arrow_forward:")
    c1, c2, c3 = st.columns(3)
    c1.page_link(PAGES["seeds"], label="Seeds", icon=":material/grass:")
    c2.page_link(PAGES["runs"], label="Runs", icon=":material/play_circle:")
    c3.page_link(PAGES["evolve"], label="Step through", icon=":material/footprint:")
