"""The Templates page's logic without Streamlit: version tables, the template choices of the Runs page, and tuning
sessions and version comparisons as jobs of the app's background registry (evolab/app/jobs.py: they survive page
changes; the page polls the store, where every step is written)."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pandas as pd

from evolab.app import jobs
from evolab.app.jobs import Job
from evolab.audit import tuning
from evolab.engine.operations import operation_names
from evolab.engine.templates import SHIPPED, TemplateVersion, all_versions, versions
from evolab.llm.base import Backend
from evolab.llm.client import LLMClient, make_backend
from evolab.schema import RunConfig
from evolab.store import Store

TUNE, COMPARE = "tune", "compare-versions"  # their kinds in the registry


def versions_table(store: Store, operation: str, language: str) -> pd.DataFrame:
    """The versions of one template, shipped first, with how many nodes (any run) each has made."""
    rows = []
    for v in versions(store, operation, language):
        rows.append({"name": v.name, "version": v.version, "parent": v.parent_version or "",
                     "nodes made": len(store.template_nodes(v.key, v.version)), "note": v.note or "",
                     "shipped": v.shipped})
    return pd.DataFrame(rows, columns=["name", "version", "parent", "nodes made", "note", "shipped"])


def template_choices(store: Store) -> dict[str, list[TemplateVersion]]:
    """operation -> its stored versions (any language), for operations that have any beyond the shipped file."""
    out: dict[str, list[TemplateVersion]] = {}
    for v in all_versions(store):
        if not v.shipped and not v.name.startswith(SHIPPED):
            out.setdefault(v.operation, []).append(v)
    return {op: out[op] for op in operation_names() if op in out}


def chosen_templates(picks: dict[str, TemplateVersion | None]) -> dict[str, str]:
    """RunConfig.templates from the Runs page's picks (None: the shipped file)."""
    return {v.key: v.version for v in picks.values() if v is not None}


def user_runs(store: Store) -> list[dict[str, Any]]:
    """Runs a session can learn from: not interactive, not a tuning session's own dev runs."""
    dev = store.tuning_dev_run_ids()
    return [r for r in store.list_runs() if r["id"] not in dev and r["status"] != "interactive"]


def sessions_for(store: Store, operation: str, language: str) -> list[dict[str, Any]]:
    return [s for s in store.tuning_sessions() if s["operation"] == operation and s["language"] == language]


def session_progress(store: Store, session: dict[str, Any]) -> tuple[int, int]:
    """(children evolved so far, children the session will evolve) over its dev runs: one per dev seed and
    candidate to measure (the baseline included); (0, 0) before the optimizer has answered."""
    todo = [c for c in store.tuning_candidates(session["id"]) if c["status"] != tuning.REJECTED]
    run = store.get_run(session["run_id"])
    if not todo or run is None:
        return 0, 0
    per_run = len(tuning.dev_seeds(run["seeds"], run["config"], session["language"], session["settings"]["dev_seeds"]))
    done = 0
    for c in todo:
        if c["measures"] is not None:
            done += per_run
        elif c["dev_run_id"]:
            done += sum(1 for n in store.nodes(c["dev_run_id"]) if n.parent_id and n.status != "pending")
    return done, per_run * len(todo)


# -- background work ---------------------------------------------------------------------------------------
def job(key: str) -> Job | None:
    """A tuning session's job ("tune:SESSION") or a version comparison's (tuning.versions_comparison(a, b))."""
    kind, _, rest = key.partition(":")
    return jobs.get(TUNE, rest) if kind == TUNE else jobs.get(COMPARE, key)


def start_tuning(db_path: str, session_id: str) -> Job:
    """Run (or go on with) a stored session in a thread; `stop_tuning` stops its dev run after the steps in
    flight (resume it later)."""
    return jobs.start(TUNE, session_id,
                      lambda store, j: asyncio.run(tuning.run_session(store, session_id, stop_event=j.stop_event)),
                      db_path=db_path, shown=(tuning.TuningError,))


def stop_tuning(session_id: str) -> bool:
    return jobs.stop(TUNE, session_id)


def start_compare(db_path: str, config: RunConfig, a: TemplateVersion, b: TemplateVersion,
                  backend_factory: Callable[[], Backend] | None = None) -> Job:
    """Judge what two versions kept (tuning.compare_versions) with the sidebar's endpoint as the judge."""

    def work(store: Store, j: Job) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            client = LLMClient(backend_factory() if backend_factory else make_backend(config), store,
                               concurrency=config.concurrency, structured=config.structured)
            try:
                return await tuning.compare_versions(store, client, a, b, max_tokens=config.max_tokens_judge,
                                                     temperature=config.temperature_judge)
            finally:
                await client.aclose()

        return asyncio.run(go())

    return jobs.start(COMPARE, tuning.versions_comparison(a, b), work, db_path=db_path, shown=(tuning.TuningError,))
