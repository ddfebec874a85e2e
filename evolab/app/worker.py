"""Background runs for the app: a worker thread per run, outside Streamlit's script thread.

A widget interaction stops a Streamlit script, so runs never execute there. A worker writes every step
to the store; pages poll the store. The registry lives in this module, i.e. in the server process, so a
run keeps going when the user changes page, reloads or opens a second tab.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from evolab.analysis import frames as analysis
from evolab.engine.batch import run_batched
from evolab.engine.pipeline import run_sync
from evolab.llm.base import Backend
from evolab.store import Store


@dataclass
class Job:
    run_id: str
    db_path: str
    until_round: int | None = None
    warm_analysis: bool = True
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    status: str = "starting"
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def start(db_path: str, run_id: str, *, until_round: int | None = None,
          backend_factory: Callable[[], Backend] | None = None, warm_analysis: bool | None = None,
          batch: Any = None) -> Job:
    """Start (or resume) a run in a worker thread; a run already running is returned as is. `batch`: a
    batch.BatchOptions to run each stage as a batch job (evolab/engine/batch.py)."""

    if warm_analysis is None:  # the app's warm-up switch covers this too
        warm_analysis = os.environ.get("EVOLAB_APP_WARMUP", "1") != "0"
    with _LOCK:
        job = _JOBS.get(run_id)
        if job is not None and job.alive:
            return job
        job = Job(run_id=run_id, db_path=db_path, until_round=until_round, warm_analysis=warm_analysis)

        def work() -> None:
            store = Store(db_path)
            try:
                job.status = "running"
                backend = backend_factory() if backend_factory else None
                if batch is not None:
                    job.status = run_batched(store, run_id, backend=backend, options=batch,
                                             stop_event=job.stop_event, until_round=until_round)
                else:
                    job.status = run_sync(store, run_id, backend=backend, stop_event=job.stop_event,
                                          until_round=until_round)
                if job.warm_analysis:  # its own thread: the job counts as done once the run is
                    threading.Thread(target=_warm_analysis, args=(db_path, run_id), daemon=True).start()
            except Exception as e:  # shown on the page; the store has every finished step
                job.status, job.error = "failed", f"{type(e).__name__}: {e}"
                traceback.print_exc()
                store.set_run_status(run_id, "failed", job.error)
            finally:
                job.finished_at = time.time()
                store.close()

        job.thread = threading.Thread(target=work, name=f"evolab-run-{run_id}", daemon=True)
        _JOBS[run_id] = job
        job.thread.start()
        return job


def _warm_analysis(db_path: str, run_id: str) -> None:
    """Embed the run and fit its UMAP map now (both are cached by content), so the Diversity page opens
    at once instead of embedding a thousand instructions when the user first looks."""
    try:
        store = Store(db_path)
        try:
            analysis.warm_map(store, run_id)
        finally:
            store.close()
    except Exception:  # only a head start: the page computes and reports it itself
        traceback.print_exc()


def stop(run_id: str) -> bool:
    """Ask a run to stop after the steps in flight; True when a running job was found."""
    job = _JOBS.get(run_id)
    if job is None or not job.alive:
        return False
    job.stop_event.set()
    return True


def get(run_id: str) -> Job | None:
    return _JOBS.get(run_id)


def is_running(run_id: str) -> bool:
    job = _JOBS.get(run_id)
    return bool(job and job.alive)


def wait(run_id: str, timeout: float | None = None) -> Job | None:
    job = _JOBS.get(run_id)
    if job and job.thread:
        job.thread.join(timeout)
    return job
