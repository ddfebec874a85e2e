"""What every CLI command shares: the bad-input error (exit 2), the store and the run a command names."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from evolab.seeds.files import SeedFileError, load_seeds
from evolab.seeds.importing import parse_mapping
from evolab.store import Store

DEFAULT_DB = os.environ.get("EVOLAB_DB", "evolab.db")


class BadInput(Exception):
    """Raised for input problems: exit status 2."""


def open_store(path: str, must_exist: bool = True) -> Store:
    if must_exist and not Path(path).exists():
        raise BadInput(f"No store at {path}: run `python -m evolab run SEEDS --db {path}` first.")
    return Store(path)


def pick_run_id(store, run_id: str | None) -> str:
    if run_id:
        if store.get_run(run_id) is None:
            raise BadInput(f"No run {run_id!r} in {store.path}; `python -m evolab runs --db {store.path}` lists them.")
        return run_id
    latest = store.latest_run_id()
    if latest is None:
        raise BadInput(f"{store.path} has no runs yet.")
    return latest


def load_seed_file(path: str, mapping: str | None = None):
    try:
        return load_seeds(path, mapping=parse_mapping(mapping) or None)
    except SeedFileError as e:
        raise BadInput(str(e)) from e
    except ValueError as e:  # a bad --map
        raise BadInput(str(e)) from e
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file.") from None


def add_map_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map", metavar="FIELD=COLUMN,...", help="the columns that hold the seed fields, for files "
                   "with other names: e.g. instruction=question,input=context,skill=category,difficulty=level")
