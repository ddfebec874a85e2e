"""The Diversity map's warm-up after a CLI run, in a detached process of its own, and how the app sees it.

A run is done when its last step is stored: the CLI prints its summary and returns, and embedding the run and
fitting its map (minutes on a large run: e5 embeds some 65 instructions a second here) goes on in a background
process (`python -m evolab.analysis.warmup --db DB --run RUN`, started by `start_background_warm`). That process
keeps its state in the store's meta table under `warm_map:<run id>` (no schema change): its pid and host, the
stage ("embedding" k of n, "fitting", then "done" or "failed") and when it last moved. The Diversity page asks
`warm_state`: while a warm-up of the run is alive it waits on it and shows its progress instead of embedding the
same texts a second time; a finished, failed or dead one (its pid gone) is no longer in progress, and the page
computes what is left itself (the caches hold whatever the warm-up finished).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evolab.analysis.frames import warm_map
from evolab.llm.base import mask_secrets
from evolab.store import Store

META_PREFIX = "warm_map:"
RUNNING, DONE, FAILED = "running", "done", "failed"


def _key(run_id: str) -> str:
    return META_PREFIX + run_id


def read_state(store: Store, run_id: str) -> dict[str, Any] | None:
    """The last state a warm-up of this run wrote, whatever it is (None: never warmed in the background)."""
    raw = store.get_meta(_key(run_id))
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def write_state(store: Store, run_id: str, **state: Any) -> None:
    store.set_meta(_key(run_id), json.dumps({**state, "updated": time.time()}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that pid: alive, not ours to judge
        return True
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped: a container's first process may never reap it) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def warm_state(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's warm-up while one is in progress, else None. In progress: state "running" and its process
    alive (a warm-up started on another host, which this one cannot see, counts while it keeps moving)."""
    state = read_state(store, run_id)
    if not state or state.get("state") != RUNNING:
        return None
    if state.get("host") == socket.gethostname():
        return state if _alive(int(state.get("pid", 0))) else None
    return state if time.time() - float(state.get("updated", 0)) < 600 else None


def describe(state: dict[str, Any]) -> str:
    """"embedding 1,280 of 3,000 instructions" or "fitting the map on 3,000 instructions"."""
    done, total = int(state.get("done", 0)), int(state.get("total", 0))
    if state.get("stage") == "fitting":
        return f"fitting the map on {total:,} instructions"
    if state.get("stage") == "embedding" and total:
        return f"embedding {done:,} of {total:,} instructions"
    return "starting"


def log_path(db_path: str, run_id: str) -> Path:
    """Where the background warm-up writes what it prints: beside the map's cache (`<db>.umap/`)."""
    return Path(str(db_path) + ".umap") / f"warm-{run_id}.log"


def start_background_warm(db_path: str, run_id: str) -> int:
    """Start the warm-up of the run's map in a detached process (its own session: Ctrl-C in the terminal, or the
    terminal closing, does not stop it) and return its pid. Its state is in the store before this returns, so a
    Diversity page opened at once already waits on it."""
    log = log_path(db_path, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db_path)
    try:
        # in the store before the process starts (under this process's pid, alive until the CLI returns), then
        # under the child's: a page opened meanwhile waits; the child's own first write comes seconds later
        write_state(store, run_id, state=RUNNING, stage="starting", done=0, total=0, pid=os.getpid(),
                    host=socket.gethostname(), started=time.time())
        with open(log, "ab") as out:
            kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
                "creationflags": getattr(subprocess, "DETACHED_PROCESS", 0)
                | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
            process = subprocess.Popen(
                [sys.executable, "-m", "evolab.analysis.warmup", "--db", str(db_path), "--run", run_id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True, **kwargs)
        state = read_state(store, run_id) or {}
        if state.get("pid") == os.getpid():  # the child has not written yet
            write_state(store, run_id, **{**state, "pid": process.pid})
    finally:
        store.close()
    return process.pid


def run_warm(db_path: str, run_id: str) -> int:
    """The background process: warm the map, writing its stage into the store as it goes. Exit 0 when the map is
    ready, 1 when it failed (the page then computes it itself)."""
    store = Store(db_path)
    base = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == "embedding" and done not in (0, total) and now - last[0] < 0.5:
            return  # a state write at most twice a second
        last[0] = now
        write_state(store, run_id, state=RUNNING, stage=stage, done=done, total=total, **base)
        print(f"{time.strftime('%H:%M:%S')} {stage} {done} of {total}", flush=True)

    try:
        write_state(store, run_id, state=RUNNING, stage="starting", done=0, total=0, **base)
        result = warm_map(store, run_id, progress=progress)
        write_state(store, run_id, state=DONE, stage="done", done=result["nodes"], total=result["nodes"],
                    embedder=result["embedder"], finished=time.time(), **base)
    except Exception as e:  # noqa: BLE001 - the run is stored; the page computes the map itself
        error = mask_secrets(f"{type(e).__name__}: {e}")[:500]  # an endpoint's message may echo a key
        write_state(store, run_id, state=FAILED, error=error, **base)
        print(f"failed: {error}", flush=True)
        return 1
    finally:
        store.close()
    print(f"{time.strftime('%H:%M:%S')} map ready: {result}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evolab.analysis.warmup",
                                 description="Embed a run and fit its Diversity map into the store's caches.")
    ap.add_argument("--db", required=True)
    ap.add_argument("--run", required=True)
    args = ap.parse_args(argv)
    return run_warm(args.db, args.run)


if __name__ == "__main__":
    sys.exit(main())
