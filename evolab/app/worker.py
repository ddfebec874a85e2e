"""The app's background work, in the job registry (evolab/app/jobs.py): runs, and growing and tagging a seed set.

A widget interaction stops a Streamlit script, so this work never executes there. A job writes every step to the
store; pages poll the store. The registry lives in the server process, so a job keeps going when the user changes
page, reloads or opens a second tab. (Tuning sessions and version comparisons: evolab/app/tuning.py; the Compare
page's judge: evolab/app/support.py; all in the same registry.)
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Callable

from evolab.analysis import frames as analysis
from evolab.app import jobs
from evolab.app.jobs import Job
from evolab.engine.batch import run_batched
from evolab.engine.lease import LeaseError
from evolab.engine.pipeline import run_sync
from evolab.llm.base import Backend
from evolab.schema import RunConfig, Seed
from evolab.seeds.craft import GrowSpec, grow_sync, tag_sync
from evolab.store import Store

RUN, WARM_MAP, GROW, TAG = "run", "warm-map", "grow", "tag"


# -- runs -------------------------------------------------------------------------------------------------------
def start(db_path: str, run_id: str, *, until_round: int | None = None,
          backend_factory: Callable[[], Backend] | None = None, warm_analysis: bool | None = None,
          batch: Any = None) -> Job:
    """Start (or resume) a run in a worker thread; a run already running is returned as is. `batch`: a
    batch.BatchOptions to run each stage as a batch job (evolab/engine/batch.py)."""

    if warm_analysis is None:  # the app's warm-up switch covers this too
        warm_analysis = os.environ.get("EVOLAB_APP_WARMUP", "1") != "0"

    def work(store: Store, job: Job) -> None:
        backend = backend_factory() if backend_factory else None
        if batch is not None:
            job.status = run_batched(store, run_id, backend=backend, options=batch, stop_event=job.stop_event,
                                     until_round=until_round)
        else:
            job.status = run_sync(store, run_id, backend=backend, stop_event=job.stop_event, until_round=until_round)
        if warm_analysis:  # its own job: the run counts as done once the run is
            jobs.start(WARM_MAP, run_id, _warm_analysis, db_path=db_path)

    def failed(job: Job, e: Exception) -> None:  # the Runs page reads the status from the store
        if isinstance(e, LeaseError):  # another engine runs it: its status is not this job's to change
            return
        store = Store(db_path)
        try:
            store.set_run_status(run_id, "failed", job.error)
        finally:
            store.close()

    return jobs.start(RUN, run_id, work, db_path=db_path, on_error=failed, shown=(LeaseError,),
                      until_round=until_round, warm_analysis=warm_analysis)


def _warm_analysis(store: Store, job: Job) -> None:
    """Embed the run and fit its UMAP map now (both are cached by content), so the Diversity page opens
    at once instead of embedding a thousand instructions when the user first looks."""
    try:
        analysis.warm_map(store, job.key)
    except Exception:  # only a head start: the page computes and reports it itself
        traceback.print_exc()


def stop(run_id: str) -> bool:
    """Ask a run to stop after the steps in flight; True when a running job was found."""
    return jobs.stop(RUN, run_id)


def get(run_id: str) -> Job | None:
    return jobs.get(RUN, run_id)


def is_running(run_id: str) -> bool:
    return jobs.is_running(RUN, run_id)


def wait(run_id: str, timeout: float | None = None) -> Job | None:
    return jobs.wait(RUN, run_id, timeout)


# -- growing and tagging a seed set (evolab/seeds/craft.py) ------------------------------------------------------
def start_grow(db_path: str, config: RunConfig, spec: GrowSpec, *, backend_factory: Any = None,
               embedder: Any = "default") -> Job:
    """Grow in a worker thread (one per store at a time); the page polls the store. `job.progress` is the grow's
    last progress report (its "job_id" names the grow job in the store); `job.result` the GrowResult."""
    def work(store: Store, job: Job) -> Any:
        result = grow_sync(store, config, spec, backend=backend_factory() if backend_factory else None,
                           embedder=embedder, stop_event=job.stop_event, progress=job.progress.update)
        job.status = result.status
        job.error = result.message if result.status == "failed" else None
        return result

    return jobs.start(GROW, db_path, work, db_path=db_path)


def grow_job_for(db_path: str) -> Job | None:
    return jobs.get(GROW, db_path)


def start_tag(db_path: str, config: RunConfig, seeds: list[Seed], *, backend_factory: Any = None) -> Job:
    """Propose tags in a worker thread (calls are recorded and cached in the store); `job.result` is the list of
    TagProposal when done."""
    def work(store: Store, job: Job) -> Any:
        return tag_sync(config, list(seeds), store, backend=backend_factory() if backend_factory else None,
                        max_tokens=max(96, config.max_tokens_judge))

    return jobs.start(TAG, db_path, work, db_path=db_path)


def tag_job_for(db_path: str) -> Job | None:
    return jobs.get(TAG, db_path)
