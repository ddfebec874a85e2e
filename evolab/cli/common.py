"""What every CLI command shares: the bad-input error (exit 2), the store and the run a command names."""
from __future__ import annotations

import os
from pathlib import Path

from evolab.store import Store

DEFAULT_DB = os.environ.get("EVOLAB_DB", "evolab.db")


class BadInput(Exception):
    """Raised for input problems: exit status 2."""


def _store(path: str, must_exist: bool = True) -> Store:
    if must_exist and not Path(path).exists():
        raise BadInput(f"No store at {path}: run `python -m evolab run SEEDS --db {path}` first.")
    return Store(path)


def _run_id(store, run_id: str | None) -> str:
    if run_id:
        if store.get_run(run_id) is None:
            raise BadInput(f"No run {run_id!r} in {store.path}; `python -m evolab runs --db {store.path}` lists them.")
        return run_id
    latest = store.latest_run_id()
    if latest is None:
        raise BadInput(f"{store.path} has no runs yet.")
    return latest
