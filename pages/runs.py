"""Runs: configure a batch run, see its cost estimate, start it in a worker, watch it live, stop, resume,
or step it one round at a time and inspect each round."""
from __future__ import annotations

import json
import time

import streamlit as st

from evolab.app import support as app_support
from evolab.app import worker
from evolab.app.tuning import chosen_templates, template_choices
from evolab.engine import pipeline
from evolab.engine.adaptive import REWARD_TEXT
from evolab.engine.estimate import estimate_run
from evolab.engine.scoring import SCORERS
from evolab.llm.base import redact_url
from evolab.llm.ratelimit import describe as describe_limits
from evolab.schema import RunConfig
from ui import common as app_common

db = app_common.store()
settings = app_common.settings()
st.title("Runs")
st.caption("A run evolves every seed for a number of rounds in a worker outside this page: it keeps going when "
           "you change page, reload or open a second tab. Progress is read from the store.")

new_col, run_col = st.columns([2, 3], gap="large")

# -- a new run ----------------------------------------------------------------------------------------
with new_col:
    st.subheader("New run")
    table_seeds = st.session_state.get("seeds")
    sources = app_support.seed_sources(db, table_seeds)
    app_common.valid_choice("run_source", sources)
    source = st.selectbox("Seeds", sources, key="run_source",
                          format_func=lambda s: app_support.seed_source_label(s, table_seeds))
    st.caption(f"Endpoint and model: **{app_common.md(settings.endpoint_label)}** (change them in the sidebar).")
    name = st.text_input("Run name", key="run_name", placeholder="e.g. finance-4-rounds")
    limit = st.number_input("Use only the first N seeds (0 = all)", 0, 1_000_000, 0, key="run_limit",
                            help="Try a few seeds first, see what they cost, then run them all.")
    c1, c2 = st.columns(2)
    rounds = c1.number_input("Rounds", 1, 20, 4, key="run_rounds")
    fanout = c2.number_input("Fan-out (operations per node per round)", 1, 5, 1, key="run_fanout")
    c3, c4 = st.columns(2)
    concurrency = c3.number_input("Concurrency (requests in flight)", 1, 128, 8, key="run_concurrency")
    budget = c4.number_input("Budget USD (0 = none)", 0.0, 10_000.0, 0.0, step=1.0, key="run_budget",
                             help="The run stops before it could spend more than this (needs a known price).")
    c7, c8 = st.columns(2)
    budget_tokens = c7.number_input("Budget tokens (0 = none)", 0, 10**12, 0, step=100_000, key="run_budget_tokens",
                                    help="The run stops before it could use more tokens (prompt + output); "
                                         "works for every model, priced or not.")
    price_field = c8.text_input("Price IN,OUT (USD per million tokens)", key="run_price", placeholder="from the table",
                                help="The model's input and output price; empty: the built-in table, a file "
                                     "named by EVOLAB_PRICES, or unknown.")
    c5, c6 = st.columns(2)
    random_seed = c5.number_input("Random seed", 0, 2**31 - 1, 0, key="run_random_seed")
    language = c6.selectbox("Language of the templates", ["auto", "en", "ko"], key="run_language",
                            help="auto: per seed, Korean when the seed is mostly Hangul.")
    st.markdown("**Operation weights** (0 switches an operation off)")
    adaptive_ops = st.toggle("Learn the weights during the run (adaptive)", key="run_adaptive_ops",
                             help="Thompson sampling among the operations with a weight above 0, on the reward: "
                                  f"{REWARD_TEXT}. Every choice is stored; see Drift.")
    if adaptive_ops:
        st.caption("Adaptive: the operations with a weight above 0 are the ones to choose from; the weights' values "
                   "are not used.")
    weights_frame = st.data_editor(app_support.operation_weights_frame(), key="run_weights", hide_index=True,
                                   width="stretch", disabled=["operation"],
                                   column_config={"weight": st.column_config.NumberColumn(min_value=0.0,
                                                                                          step=0.5)})
    template_picks = {}  # tuned template versions (Templates page); the shipped file unless one is picked
    if tuned := template_choices(db):
        st.markdown("**Template versions** (tuned on the Templates page)")
        for col, (op, found) in zip(st.columns(len(tuned)), tuned.items()):
            template_picks[op] = col.selectbox(op, [None] + found, key=f"run_template_{op}",
                                               format_func=lambda v: "shipped" if v is None else f"{v.language}: {v.label}")
    limits = settings.token_defaults()
    with st.expander("Answers, judges and rules"):
        a1, a2 = st.columns(2)
        max_respond = a1.number_input("Max tokens of an answer", 16, 8192, limits["max_tokens_respond"],
                                      key="run_max_respond")
        max_evolve = a2.number_input("Max tokens of an evolved instruction", 16, 8192, limits["max_tokens_evolve"],
                                     key="run_max_evolve")
        if settings.uses_local_model:
            st.caption("Short limits for the embedded model, so trying the workflow takes minutes, not hours.")
        st.markdown("**Scorers** (every node is measured by the ones ticked)")
        scorers = [name for name, scorer in SCORERS.items()
                   if st.checkbox(scorer.label or name, scorer.default, key=f"run_scorer_{name}",
                                  help=(type(scorer).__doc__ or "").strip().split("\n")[0] or None)]
        equal_judge = st.checkbox("Ask the LLM whether a child equals its parent (paper rule 1)", True,
                                  key="run_equal_judge")
        dedup = st.checkbox("Drop near-duplicates inside the run (ROUGE-L > 0.7)", False, key="run_dedup")
        quality_filter = st.checkbox("Drop answers with a quality score under", False, key="run_quality_filter")
        quality_min = st.slider("Minimum quality", 0.0, 5.0, 4.5, 0.5, key="run_quality_min",
                                disabled=not quality_filter)
        check_answers = st.checkbox("Check numeric answers: ask each 3 more times and compare the numbers (3 extra "
                                    "calls per numeric item; see Drift)", False, key="run_check_answers")
    with st.expander("Rate limits"):
        st.caption("evolab paces itself by the provider's x-ratelimit headers, or, with none, adapts how many "
                   "requests are in flight (fewer after a 429 or 503, more after a run of successes). Caps of your "
                   "own, e.g. your account's tier:")
        r1, r2 = st.columns(2)
        rpm = r1.number_input("Requests per minute (0 = no cap)", 0, 10**7, 0, step=100, key="run_rpm")
        tpm = r2.number_input("Tokens per minute (0 = no cap)", 0, 10**10, 0, step=10_000, key="run_tpm")

    problems = settings.problems()
    seeds, config = [], None
    try:
        seeds = app_support.load_seed_source(db, source, table_seeds)
        seeds = seeds[:int(limit)] if limit else seeds
        weights = app_support.weights_from_frame(weights_frame)
        config = settings.run_config(
            rounds=int(rounds), fanout=int(fanout), concurrency=int(concurrency),
            budget_usd=float(budget) or None, budget_tokens=int(budget_tokens) or None,
            price=price_field, random_seed=int(random_seed), language=language,
            operation_weights=weights, operation_sampling="adaptive" if adaptive_ops else "weights",
            templates=chosen_templates(template_picks),
            name=name.strip() or None, max_tokens_respond=int(max_respond),
            max_tokens_evolve=int(max_evolve), scorers=list(scorers),
            rpm=int(rpm) or None, tpm=int(tpm) or None,
            check_answers=check_answers,
            rules={"use_equal_judge": equal_judge, "duplicate": dedup, "quality_filter": quality_filter,
                   "quality_min": float(quality_min)})
        problems += app_support.budget_problems(config)
    except (ValueError, KeyError) as e:  # RunConfigError: the CLI's words for the same bad choice
        problem = str(e).strip("'\"")
        if problem not in problems:  # the sidebar's endpoint problem is the builder's first check too
            problems.append(problem)

    if config is not None and seeds:
        est = estimate_run(seeds, config, app_common.call_timing(db, config))
        st.markdown(f"**Estimate** for {est['seeds']} seeds × {est['rounds']} rounds, fan-out {est['fanout']}: time "
                    f"and cost (tokens counted with {est['tokenizer']})")
        # A static table wraps: every column stays readable in this narrow column at any window width.
        st.table(app_support.estimate_frame(est).style.hide(axis="index"))
        st.caption(f"Time: {app_common.md(est['time_text'])} · Price: {est['price_text']} · as batch jobs: "
                   f"{est['batch_price_text']}")
    for p in problems:
        st.error(app_common.md(p))
    as_batch = st.checkbox("Run each stage as a batch job", key="run_as_batch",
                           help="The endpoint's Batch API (OpenAI: half price, each job may take up to 24 h; a round "
                                "is about 4 jobs). The run resumes by polling its jobs, never submitting them twice.")
    b1, b2 = st.columns(2)
    start_all = b1.button("Start run", key="run_start", type="primary", disabled=bool(problems) or not seeds,
                          width="stretch")
    start_one = b2.button("Run round 1 only", key="run_start_round", disabled=bool(problems) or not seeds,
                          width="stretch", help="Step the batch: round 1 for every seed, then inspect it "
                                                "and continue round by round.")
    if start_all or start_one:
        seed_set = source[1] if source[0] == "set" else None
        run_id = pipeline.create_run(db, seeds, config, name=config.name, seed_set=seed_set)
        worker.start(db.path, run_id, until_round=1 if start_one else None,
                     batch=app_support.batch_options() if as_batch else None)
        app_common.remember("run", run_id)
        st.session_state.pop("runs_run", None)
        st.session_state["runs_started"] = run_id
        st.rerun()

    # After Start the page stays scrolled down here, under the button, and the Run panel is at the top: the run's
    # status shows here too, live, until it ends.
    if (started := st.session_state.get("runs_started")) and db.get_run(started) is not None:
        @st.fragment(run_every=2.0 if worker.is_running(started) else None)
        @app_common.guarded
        def started_status() -> None:
            info = app_support.progress_info(db, started, worker.get(started))
            was = st.session_state.get(f"_started_running_{started}", False)
            st.session_state[f"_started_running_{started}"] = info["running"]
            if was and not info["running"]:
                st.rerun(scope="app")
            with st.container(border=True, key="runs_started_status"):
                st.markdown(f"**Started** {app_common.md(app_support.run_label(db.get_run(started)))}: "
                            f"{app_common.status_badge(info['status'])}")
                st.progress(min(1.0, info["fraction"]),
                            text=f"{info['done']} of {info['expected']} evolution steps"
                                 + (f" · ETA {app_support.eta_text(info)}" if info["running"] else ""))
                if info["running"]:
                    st.caption(app_support.activity_text(info["activity"]))
                st.caption("Everything about it is in the Run panel at the top right.")

        started_status()

# -- the selected run ------------------------------------------------------------------------------------
with run_col:
    st.subheader("Run")
    batch_runs = [r for r in db.list_runs() if r["status"] != "interactive"]
    if not batch_runs:
        st.info("No batch run yet: choose seeds and settings on the left, check the estimate, then press "
                "**Start run** (or **Run round 1 only** to step it round by round).", icon=":material/arrow_back:")
        st.stop()
    run = app_common.pick_run(db, key="runs_run", runs=batch_runs)
    run_id = run["id"]
    cfg: RunConfig = run["config"]
    st.caption(f"{len(run['seeds'])} seeds · {cfg.rounds} rounds · fan-out {cfg.fanout} · model {app_common.md(cfg.model)} "
               f"at {app_common.md(redact_url(cfg.base_url)) or 'the embedded local model'} · concurrency {cfg.concurrency}"
               + (f" · at most {cfg.rpm:,} requests/min" if cfg.rpm else "")
               + (f" · at most {cfg.tpm:,} tokens/min" if cfg.tpm else "")
               + (f" · budget ${cfg.budget_usd:g}" if cfg.budget_usd else "")
               + (f" · budget {cfg.budget_tokens:,} tokens" if cfg.budget_tokens else "")
               + f" · random seed {cfg.random_seed}")
    st.caption(f"Price: {app_support.price_text(cfg)}")

    # Polls while a worker here runs it, or another process's engine does (its lease: evolab/engine/lease.py).
    @st.fragment(run_every=2.0 if worker.is_running(run_id) or app_support.running_elsewhere(db, run_id) else None)
    @app_common.guarded
    def run_panel() -> None:
        """Polls the store every 2 s while a worker runs this run; a full rerun when the run ends."""
        job = worker.get(run_id)
        info = app_support.progress_info(db, run_id, job)
        running = info["running"]
        was_running = st.session_state.get(f"_was_running_{run_id}", False)
        st.session_state[f"_was_running_{run_id}"] = running
        if was_running and not running:
            st.rerun(scope="app")  # the run ended: stop polling, redraw the buttons
        status = info["status"]
        st.markdown(f"Status: {app_common.status_badge(status)}"
                    + (f" · until round {info['until_round']} of {info['rounds']}" if info["until_round"] <
                       info["rounds"] else ""))
        st.progress(min(1.0, info["fraction"]),
                    text=f"{info['done']} of {info['expected']} evolution steps"
                         + (f" · ETA {app_support.eta_text(info)}" if running else ""))
        if running:  # what the run is doing, from its stored calls (the limiter's own window can lag)
            st.caption(app_support.activity_text(info["activity"]))
        m = st.columns(4)
        m[0].metric("Kept", info["kept"])
        m[1].metric("Eliminated", info["eliminated"])
        m[2].metric("Failed", info["failed"])
        m[3].metric("ETA", app_support.eta_text(info).split(" (")[0],
                    help="At the pace of the steps finished since the worker started; the progress bar gives the "
                         "95% range. 'finishing': every expected step is done, the last answers and scores are "
                         "coming in.")
        m = st.columns(4)
        m[0].metric("Calls", f"{info['calls']:,}", help=f"{info['cached_calls']} from the cache, "
                                                         f"{info['failed_calls']} failed")
        m[1].metric("Tokens", f"{info['tokens']:,}", help=f"prompt {info['prompt_tokens']:,} · "
                                                          f"completion {info['completion_tokens']:,} (reasoning "
                                                          f"{info['reasoning_tokens']:,}, billed as output)")
        m[2].metric("Cost", f"${info['cost_usd']:.4f}", help=None if info["price_known"] else
                    "Some calls used a model without a known price (counted as $0).")
        m[3].metric("Deepest round", f"{info['max_round']} of {info['rounds']}")
        # The rate limiter's numbers, which the engine keeps in the store every 2 s while it runs.
        limits = json.loads(db.get_meta(f"ratelimit|{run_id}") or "null")
        if limits and running and time.time() - limits.get("at", 0) < 30:
            st.caption(f"Limiter: {describe_limits(limits)}"
                       + (f" · {limits['rate_limited']} answers were 429/503" if limits.get("rate_limited") else ""))
        elif limits:
            st.caption(f"Last rate while running: {describe_limits(limits)}")
        if info["by_rule"]:
            st.markdown("**Eliminated or failed, by rule**")
            st.dataframe(app_support.counts_frame(info["by_rule"], "rule"), hide_index=True)
        if status == "failed":
            st.error(f"The run failed: {app_common.md(info['error'] or (job.error if job else 'unknown error'))}. Every finished "
                     "step is stored: fix the cause (endpoint, key, model) and press Resume.")
        elif status == "budget":
            st.warning("The budget ran out. Start a new run with a higher budget, or resume to use what is left.")
        if info["elsewhere"]:
            st.info(f"Running elsewhere: {info['elsewhere']}. Resume is offered here once that engine ends or "
                    "its lease expires.")
        elif status == "running" and not running:
            st.warning("The store says this run is running, but no worker of this app process runs it (was the "
                       "app restarted?). Press Resume to continue it here.")

        batches = app_support.batch_info(db, run_id)
        if batches["text"]:
            st.caption(app_common.md(batches["text"]))
        batch = app_support.batch_options() if batches["uses_batch"] else None  # resume the way it ran
        action = app_support.next_action(status, info["max_round"], cfg.rounds)
        c1, c2, c3 = st.columns(3)
        if batches["open"] and c3.button("Cancel batch job", key="run_batch_cancel", width="stretch"):
            app_support.cancel_batches(db, run_id)
            st.toast("Cancelling the batch job; the answers already in are kept.")
        if running:
            if c1.button("Stop", key="run_stop", type="primary", width="stretch"):
                worker.stop(run_id)
                st.toast("Stopping after the steps in flight; finished steps are kept.")
        elif info["elsewhere"]:
            c1.button("Running elsewhere", key="run_elsewhere", disabled=True, width="stretch")
        elif action != "done":
            next_round = min(pipeline.next_round(db, run_id), cfg.rounds)
            if status == "paused" and info["max_round"] < cfg.rounds:
                next_round = info["max_round"] + 1
            label = "Start" if action == "start" else "Resume to the end"
            if c1.button(label, key="run_resume", type="primary", width="stretch"):
                worker.start(db.path, run_id, batch=batch)
                st.rerun(scope="app")
            if c2.button(f"Run through round {next_round} only", key="run_next_round", width="stretch"):
                worker.start(db.path, run_id, until_round=next_round, batch=batch)
                st.rerun(scope="app")
        else:
            c1.success("Finished.")
        if not running and info["max_round"] > 0:
            c3.page_link(app_common.PAGES["lineage"], label="Open its lineage", icon=":material/account_tree:")

        # A stepped batch: what round k made and what it eliminated.
        if info["max_round"] > 0:
            frame = app_common.nodes_frame(db, run_id)
            st.markdown("**Inspect a round**")
            rounds_made = list(range(1, info["max_round"] + 1))
            # A new key per round count: a round that arrives is shown at once.
            rnd = st.selectbox("Round", rounds_made, index=len(rounds_made) - 1,
                               key=f"run_inspect_round_{run_id}_{len(rounds_made)}")
            table = app_support.round_table(frame, rnd)
            kept = int((table["status"] == "kept").sum())
            st.caption(f"Round {rnd}: {len(table)} nodes made, {kept} kept, "
                       f"{len(table) - kept} eliminated or failed.")
            # The columns that fit this panel at 1400 px (the rest, and whole texts, are on Lineage).
            st.dataframe(table, hide_index=True, width="stretch",
                         column_order=["status", "operation", "instruction", "detail"],
                         column_config={"status": st.column_config.TextColumn("status", width=70),
                                        "operation": st.column_config.TextColumn("operation", width=100),
                                        "instruction": st.column_config.TextColumn("instruction", width=170),
                                        "detail": st.column_config.TextColumn("why", width=110)})
        elif not running:
            st.caption("Nothing evolved yet.")

    run_panel()

    with st.expander("All runs in this store"):
        st.dataframe(app_support.runs_frame(db, batch_runs), hide_index=True, width="stretch")
