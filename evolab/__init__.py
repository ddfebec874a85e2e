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

__version__ = "0.1.0"

# Each public name and the module that defines it; `__getattr__` imports the module on first use.
_LAZY: dict[str, str] = {
    # the store and runs: thin entry points over the engine (evolab/api.py)
    "open_store": "evolab.api",
    "load_example": "evolab.api",
    "create_run": "evolab.api",
    "run": "evolab.api",
    "resume": "evolab.api",
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
    from evolab.api import create_run, load_example, open_store, resume, run
    from evolab.embeddings.novelty import diversity_frame, near_duplicate_pairs
    from evolab.engine.plugins import load_plugins
    from evolab.export.formats import write_export
    from evolab.schema import RunConfig, Seed
    from evolab.seeds.files import load_seeds

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
