"""The one registry of everything the app runs in the background: runs, grow, tag, tuning, comparisons, warm-ups.

A widget interaction stops a Streamlit script, so long work never runs there: `start` runs it in a daemon thread
of the server process, and the registry lives in this module, i.e. in that process, so a job keeps going when the
user changes page, reloads or opens a second tab. Pages find a job again by its id and poll the store, where the
work writes every step.

A job's id is "kind:key" (e.g. "run:20250101-abc", "grow:/data/evolab.db"); one live job per id at a time:
starting an id that is still running returns the running job. Thread-safe.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from evolab.llm.base import mask_secrets
from evolab.store import Store


@dataclass
class Job:
    """One background job. `work` sets `status` when it knows better than "finished" (a run: "stopped",
    "budget"...), may fill `progress` as it goes, and returns its `result`."""

    id: str
    kind: str
    status: str = "starting"  # starting | running | finished | failed | whatever the work set
    error: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    info: dict[str, Any] = field(default_factory=dict)  # what it was started with (a run's until_round, ...)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def key(self) -> str:
        """The id without its kind (a run id, a comparison, a store path)."""
        return self.id.split(":", 1)[1] if ":" in self.id else self.id

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def until_round(self) -> int | None:
        """A run job's last round (None: to the end); what the Runs page's progress counts up to."""
        return self.info.get("until_round")


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def job_id(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def start(kind: str, key: str, work: Callable[..., Any], *, db_path: str | None = None,
          shown: tuple[type[BaseException], ...] = (), on_error: Callable[[Job, Exception], None] | None = None,
          **info: Any) -> Job:
    """Run `work(job)` in a daemon thread, or `work(store, job)` with a Store of its own when `db_path` is given
    (closed when the work ends). A live job with the same kind and key is returned as it is.

    An exception marks the job failed: its error is "Type: message" and the traceback is printed, except for the
    `shown` exception types, whose message is the error as it is (input problems the page shows in words).
    `on_error(job, exc)` runs after that (e.g. to mark a run failed in the store). `info` is kept on the job."""
    jid = job_id(kind, key)
    with _LOCK:
        current = _JOBS.get(jid)
        if current is not None and current.alive:
            return current
        job = Job(id=jid, kind=kind, info=dict(info))

        def target() -> None:
            store = Store(db_path) if db_path is not None else None
            try:
                job.status = "running"
                job.result = work(store, job) if store is not None else work(job)
                if job.status == "running":
                    job.status = "finished"
            except Exception as e:  # shown on the page; the store has every finished step
                job.status = "failed"
                # Shown on the page and stored as the run's error: keys and URL credentials masked, in the log too.
                job.error = mask_secrets(str(e) if isinstance(e, shown) else f"{type(e).__name__}: {e}")
                if not isinstance(e, shown):
                    print(mask_secrets(traceback.format_exc()), file=sys.stderr, end="")
                if on_error is not None:
                    try:
                        on_error(job, e)
                    except Exception:  # the job is failed either way
                        traceback.print_exc()
            finally:
                job.finished_at = time.time()
                if store is not None:
                    store.close()

        job.thread = threading.Thread(target=target, name=f"evolab-{jid}", daemon=True)
        _JOBS[jid] = job
        job.thread.start()
        return job


def get(kind: str, key: str) -> Job | None:
    """The latest job of that kind and key (running or not), None when this process never started one."""
    with _LOCK:
        return _JOBS.get(job_id(kind, key))


def jobs(kind: str | None = None, *, alive: bool | None = None) -> list[Job]:
    """Every job of this process (of one kind when given; only live or only ended ones with `alive`), oldest first."""
    with _LOCK:
        found = list(_JOBS.values())
    return [j for j in found if (kind is None or j.kind == kind) and (alive is None or j.alive == alive)]


def stop(kind: str, key: str) -> bool:
    """Ask a job to stop after the steps in flight (it watches its stop_event); True when a live job was found."""
    job = get(kind, key)
    if job is None or not job.alive:
        return False
    job.stop_event.set()
    return True


def is_running(kind: str, key: str) -> bool:
    job = get(kind, key)
    return bool(job and job.alive)


def wait(kind: str, key: str, timeout: float | None = None) -> Job | None:
    """Wait for the job to end (at most `timeout` seconds); the job, or None when there is none."""
    job = get(kind, key)
    if job is not None and job.thread is not None:
        job.thread.join(timeout)
    return job
