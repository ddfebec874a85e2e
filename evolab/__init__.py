"""evolab: a workbench for Evol-Instruct (WizardLM, 2023).

The public API for notebooks and scripts (docs/api.md). These names stay put when modules move:

```python
import evolab

store = evolab.open_store("evolab.db")
run_id = evolab.create_run(store, evolab.load_example("general"), rounds=2,
                           model="gpt-4o-mini", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY")
status = evolab.run(store, run_id)                      # "finished", "paused", "stopped", "budget" or "failed"
nodes = evolab.nodes_frame(store, run_id)
evolab.drift_figure(evolab.round_operation_frame(nodes, include_all=True), "difficulty")
evolab.write_export(store, run_id, "alpaca", "out.json")
```

Importing `evolab` is light: each name is loaded from its module the first time it is used (PEP 562), so
`import evolab` (and every `import evolab.<module>`, which runs this file first) loads no pandas, plotly or torch.
"""
from __future__ import annotations

import importlib
import sys
import threading

__version__ = "0.1.0"

# Each public name and the module that defines it; `__getattr__` imports the module on first use.
_LAZY: dict[str, str] = {
    # seeds and run settings
    "Seed": "evolab.schema",
    "RunConfig": "evolab.schema",
    "load_seeds": "evolab.seeds.files",
    # plugins (entry points and EVOLAB_PLUGINS)
    "load_plugins": "evolab.engine.plugins",
    # the analysis frames: DataFrames from the store
    "run_overview": "evolab.analysis.frames",
    "nodes_frame": "evolab.analysis.frames",
    "round_operation_frame": "evolab.analysis.frames",
    "deltas_frame": "evolab.analysis.frames",
    "eliminations_frame": "evolab.analysis.frames",
    "calls_frame": "evolab.analysis.frames",
    "cost_frame": "evolab.analysis.frames",
    "embedding_map": "evolab.analysis.frames",
    "diversity_frame": "evolab.embeddings.novelty",
    "near_duplicate_pairs": "evolab.embeddings.novelty",
    # the figures: DataFrame in, plotly Figure out
    "lineage_figure": "evolab.analysis.viz",
    "drift_figure": "evolab.analysis.viz",
    "deltas_figure": "evolab.analysis.viz",
    "eliminations_figure": "evolab.analysis.viz",
    "umap_figure": "evolab.analysis.viz",
    "diversity_figure": "evolab.analysis.viz",
    "cost_figure": "evolab.analysis.viz",
    # export and report
    "write_export": "evolab.export.formats",
    "write_report": "evolab.analysis.report",
}

# For type checkers and IDEs only (never true at run time, so nothing heavy is imported here).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable
    from typing import Any

    from evolab.analysis.frames import (
        calls_frame,
        cost_frame,
        deltas_frame,
        eliminations_frame,
        embedding_map,
        nodes_frame,
        round_operation_frame,
        run_overview,
    )
    from evolab.analysis.report import write_report
    from evolab.analysis.viz import (
        cost_figure,
        deltas_figure,
        diversity_figure,
        drift_figure,
        eliminations_figure,
        lineage_figure,
        umap_figure,
    )
    from evolab.embeddings.novelty import diversity_frame, near_duplicate_pairs
    from evolab.engine.plugins import load_plugins
    from evolab.export.formats import write_export
    from evolab.llm.base import Backend
    from evolab.schema import RunConfig, Seed
    from evolab.seeds.files import load_seeds
    from evolab.store import Store

__all__ = [
    # store, seeds, runs
    "open_store", "Seed", "RunConfig", "load_seeds", "load_example", "create_run", "run", "resume", "load_plugins",
    # analysis frames
    "run_overview", "nodes_frame", "round_operation_frame", "deltas_frame", "eliminations_frame", "calls_frame",
    "cost_frame", "embedding_map", "diversity_frame", "near_duplicate_pairs",
    # figures
    "lineage_figure", "drift_figure", "deltas_figure", "eliminations_figure", "umap_figure", "diversity_figure",
    "cost_figure",
    # output
    "write_export", "write_report",
]


def _resolve(name: str) -> Any:
    """The object a lazy public name stands for, imported from its module (and kept in this module's globals)."""
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return _resolve(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# -- the few functions defined here: thin, documented entry points over the engine ---------------------------

def open_store(path: str | os.PathLike[str] = "evolab.db") -> Store:
    """Open the SQLite store at `path` (created, with its folder, if missing); `store.close()` when done."""
    return importlib.import_module("evolab.store").Store(path)


def load_example(name: str = "general") -> list[Seed]:
    """The packaged example seed set `name` ("general" or "finance") as a list of Seed."""
    return importlib.import_module("evolab.seeds.files").load_example(name)


def create_run(store: Store, seeds: Iterable[Seed], config: RunConfig | None = None, *, name: str | None = None,
               **settings: Any) -> str:
    """Store a new run of `seeds` with `config` and RunConfig fields given by keyword; returns the run's id.

    `config` None: RunConfig()'s defaults, e.g. `create_run(store, seeds, rounds=2, model="gpt-4o-mini")`.
    Nothing is called until `run`. Operations and scorers are checked against the registries: call
    `load_plugins()` first to use plugins.
    """
    config_class = _resolve("RunConfig")
    fields = (config or config_class()).to_dict()
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise TypeError(f"RunConfig has no field {', '.join(map(repr, unknown))}.")
    merged = config_class.from_dict({**fields, **settings})
    return importlib.import_module("evolab.engine.pipeline").create_run(store, list(seeds), merged, name=name)


def run(store: Store, run_id: str, *, backend: Backend | None = None, until_round: int | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Run (or go on with) the stored run `run_id`; returns its status: finished, paused, stopped, budget or failed.

    `backend` None: the endpoint in the run's config (pass `evolab.llm.FakeBackend()` to try it without a model);
    `until_round` stops after that round ("paused"). Works in a notebook too: with an event loop already
    running, the run goes on a worker thread and this call waits for it.
    """
    pipeline = importlib.import_module("evolab.engine.pipeline")
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
    asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
