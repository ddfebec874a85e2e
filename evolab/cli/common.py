"""What every CLI command shares: the bad-input error (exit 2), the store and the run a command names."""
from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

from evolab.seeds.files import SeedFileError, load_seeds
from evolab.seeds.importing import parse_mapping
from evolab.store import Store, peek_schema

DEFAULT_DB = os.environ.get("EVOLAB_DB", "evolab.db")


class BadInput(Exception):
    """Raised for input problems: exit status 2."""


def open_store(path: str, must_exist: bool = True) -> Store:
    """The store at `path` (a new one when `must_exist` is false and nothing is there). A path that is a folder,
    a file that is not an evolab store (README.md, another program's SQLite database: never migrated into one)
    or a missing folder is BadInput naming the path, before any call or write."""
    check_store_path(path, must_exist)
    try:
        return Store(path)
    except sqlite3.DatabaseError as e:  # damaged past its header, or locked for good
        raise BadInput(f"--db {path}: not a usable evolab store ({e}).") from None


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_store_path(path: str, must_exist: bool = True) -> None:
    """BadInput unless `path` is an evolab store, or (when `must_exist` is false) an empty file or nothing, in a
    folder that exists. Opens nothing for writing."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"--db {path} is a folder; give the store's file, e.g. {p / 'evolab.db'}.")
    if not p.exists():
        if must_exist:
            raise BadInput(f"No store at {path}: run `python -m evolab run SEEDS --db {path}` first.")
        if not p.parent.is_dir():
            raise BadInput(f"--db {path}: the folder {p.parent} does not exist.")
        return
    try:
        with p.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as e:
        raise BadInput(f"--db {path}: cannot read it ({e.strerror or e}).") from None
    if not header:
        if must_exist:
            raise BadInput(f"--db {path} is an empty file, not an evolab store.")
        return  # an empty file is a new store
    if header != _SQLITE_HEADER:
        raise BadInput(f"--db {path} is not an evolab store (not an SQLite database); give the store a run "
                       f"wrote (`python -m evolab run SEEDS --db FILE`).")
    try:  # read-only: another program's database is never touched
        tables, version = peek_schema(p)
    except sqlite3.Error as e:
        raise BadInput(f"--db {path}: not a readable SQLite database ({e}).") from None
    if version is None and (tables or must_exist):
        raise BadInput(f"--db {path} is an SQLite database but not an evolab store (it has no evolab schema); "
                       "evolab does not add its tables to another program's database.")


def check_out_path(path: str, option: str = "--out") -> None:
    """BadInput unless a file can be written at `path`: its folder exists and is writable, and `path` is not a
    folder. Checked before any call is paid for or any pass is made."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{option} {path} is a folder; give a file name in it.")
    folder = p.parent
    if not folder.is_dir():
        raise BadInput(f"{option} {path}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise BadInput(f"{option} {path}: cannot write there (permission denied).")


def check_until_round(until_round: int | None, *, rounds: int | None = None, store: Store | None = None,
                      run_id: str | None = None) -> None:
    """--until-round: a round of the run (1..rounds); for a stored run (resume, batch) also not before a round the
    run already has, nor short of the end of a finished run (which would turn it back into a paused one)."""
    if until_round is None:
        return
    if rounds is None:
        rounds = store.get_run(run_id)["config"].rounds
    if until_round < 1:
        raise BadInput(f"--until-round {until_round}: give a round number of at least 1 (the rounds run 1 to "
                       f"{rounds}).")
    if until_round > rounds:
        raise BadInput(f"--until-round {until_round} is past the run's last round ({rounds}); give 1 to {rounds}.")
    if store is None or run_id is None:
        return
    run = store.get_run(run_id)
    if run["status"] == "finished" and until_round < rounds:
        raise BadInput(f"Run {run_id} is finished: there is nothing to run up to round {until_round}.")
    reached = store.run_summary(run_id)["max_round"]
    if until_round < reached:
        raise BadInput(f"--until-round {until_round}: run {run_id} already has round {reached}; give {reached} to "
                       f"{rounds} (or leave it out to run every round).")


def parse_min_scores(items: list[str] | None) -> dict[str, float]:
    """--min-score METRIC=NUMBER (repeatable) as {metric: number}; BadInput naming the bad item."""
    min_scores = {}
    for item in items or []:
        metric, _, value = item.partition("=")
        try:
            min_scores[metric] = float(value)
        except ValueError:
            raise BadInput(f"--min-score {item!r}: use METRIC=NUMBER, e.g. quality=4.5") from None
    return min_scores


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
