"""The app's one background-job registry (evolab/app/jobs.py): one live job per kind and key, status, errors,
stop, and a Store of its own per job."""
from __future__ import annotations

import threading

from evolab.app import jobs
from evolab.store import Store


def test_one_live_job_per_id_and_its_result():
    release = threading.Event()
    first = jobs.start("test", "one", lambda job: release.wait(10) and "done")
    again = jobs.start("test", "one", lambda job: "other")
    assert again is first and first.alive and first.id == "test:one" and first.key == "one"
    assert jobs.is_running("test", "one") and first in jobs.jobs("test", alive=True)
    release.set()
    assert jobs.wait("test", "one", 10) is first
    assert not first.alive and first.status == "finished" and first.result == "done" and first.finished_at
    later = jobs.start("test", "one", lambda job: "second")  # an ended job is replaced by a new one
    jobs.wait("test", "one", 10)
    assert later is not first and jobs.get("test", "one").result == "second"


def test_stop_sets_the_event_and_the_work_sets_its_own_status():
    def work(job):
        job.stop_event.wait(10)
        job.status = "stopped"

    job = jobs.start("test", "stop", work, until_round=2)
    assert job.until_round == 2 and job.info == {"until_round": 2}
    assert jobs.stop("test", "stop")
    jobs.wait("test", "stop", 10)
    assert job.status == "stopped" and not jobs.stop("test", "stop")
    assert jobs.get("test", "nothing") is None and not jobs.stop("test", "nothing")


def test_errors_are_kept_with_their_type_unless_shown_as_they_are():
    class Plain(ValueError):
        pass

    def boom(job):
        raise RuntimeError("disk I/O error")

    seen = []
    job = jobs.start("test", "boom", boom, on_error=lambda j, e: seen.append(type(e).__name__))
    jobs.wait("test", "boom", 10)
    assert job.status == "failed" and job.error == "RuntimeError: disk I/O error" and seen == ["RuntimeError"]

    def plain(job):
        raise Plain("Name the operation.")

    job = jobs.start("test", "plain", plain, shown=(Plain,))
    jobs.wait("test", "plain", 10)
    assert job.status == "failed" and job.error == "Name the operation."


def test_a_job_with_a_db_path_gets_its_own_store(tmp_path):
    db = str(tmp_path / "jobs.db")
    Store(db).close()
    job = jobs.start("test", db, lambda store, job: store.path, db_path=db)
    jobs.wait("test", db, 10)
    assert job.status == "finished" and str(job.result) == db
