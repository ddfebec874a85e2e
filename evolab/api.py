"""The store and runs for notebooks and scripts: thin, documented entry points over the engine (re-exported by
`evolab/__init__.py`; docs/api.md)."""
from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from evolab.engine import pipeline
from evolab.engine.runconfig import build_run_config
from evolab.llm.base import Backend
from evolab.schema import RunConfig, Seed
from evolab.seeds import files as seeds_files
from evolab.store import Store


def open_store(path: str | os.PathLike[str] = "evolab.db") -> Store:
    """Open the SQLite store at `path` (created, with its folder, if missing); `store.close()` when done."""
    return Store(path)


def load_example(name: str = "general") -> list[Seed]:
    """The packaged example seed set `name` ("general" or "finance") as a list of Seed."""
    return seeds_files.load_example(name)


def create_run(store: Store, seeds: Iterable[Seed], config: RunConfig | None = None, *, name: str | None = None,
               **settings: Any) -> str:
    """Store a new run of `seeds` with `config` and RunConfig fields given by keyword; returns the run's id.

    `config` None: a config built from the keywords as the CLI builds one from its options, with the same checks
    and messages (evolab.engine.runconfig.build_run_config), e.g. `create_run(store, seeds, rounds=2,
    model="gpt-4o-mini", base_url="https://api.openai.com/v1")`; no base_url is the embedded model. Nothing is
    called until `run`. Operations and scorers are checked against the registries: call `load_plugins()` first
    to use plugins.
    """
    if config is None:  # the same checks and messages as the CLI's options and the Runs page
        config = build_run_config(**settings)
    elif settings:
        fields = config.to_dict()
        unknown = sorted(set(settings) - set(fields))
        if unknown:
            raise TypeError(f"RunConfig has no field {', '.join(map(repr, unknown))}.")
        config = RunConfig.from_dict({**fields, **settings})
    return pipeline.create_run(store, list(seeds), config, name=name)


def run(store: Store, run_id: str, *, backend: Backend | None = None, until_round: int | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Run (or go on with) the stored run `run_id`; returns its status: finished, paused, stopped, budget or failed.

    `backend` None: the endpoint in the run's config (pass `evolab.llm.FakeBackend()` to try it without a model);
    `until_round` stops after that round ("paused"). Works in a notebook too: with an event loop already
    running, the run goes on a worker thread and this call waits for it.
    """
    kwargs = {"backend": backend, "until_round": until_round, "progress": progress}
    if not _loop_running():
        return pipeline.run_sync(store, run_id, **kwargs)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["status"] = pipeline.run_sync(store, run_id, **kwargs)
        except BaseException as e:  # handed to the caller's thread below
            outcome["error"] = e

    worker = threading.Thread(target=work, name=f"evolab-run-{run_id}", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["status"]


def resume(store: Store, run_id: str | None = None, *, budget_usd: float | None = None,
           backend: Backend | None = None, until_round: int | None = None,
           progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Go on with a stopped, killed or paused run (default: the latest), repeating no stored call; returns its status.

    `budget_usd` sets a new budget first (the usual reason to resume a run the budget stopped). A run that used
    plugins needs them loaded (`load_plugins()`), as when it started.
    """
    run_id = run_id or store.latest_run_id()
    stored = store.get_run(run_id) if run_id else None
    if stored is None:
        raise LookupError(f"No run {run_id!r} in {store.path}." if run_id else f"{store.path} holds no run yet.")
    if budget_usd is not None:
        config = stored["config"]
        config.budget_usd = budget_usd
        store.update_run_config(run_id, config)
    return run(store, run_id, backend=backend, until_round=until_round, progress=progress)


def _loop_running() -> bool:
    """Whether this thread is inside a running asyncio event loop (as a Jupyter cell is)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
