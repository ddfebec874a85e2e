"""The Runs page in batch mode: the estimate's batch price, the checkbox that starts a run as batch jobs, the
jobs shown with the run, and the button that cancels the job in progress."""
from __future__ import annotations

import threading
import time

from test_app import _app_env, _fresh_resources, _navigation_mode, button, open_page, stub_module, stub_settings, texts  # noqa: F401

from evolab.app import support as app_support
from evolab.app import worker
from evolab.schema import Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer


def test_runs_page_starts_a_batch_run_and_cancels_its_job(tmp_path):
    db = str(tmp_path / "b.db")
    with StubServer() as stub:
        # The job stays in progress until the test has clicked Cancel: its first line waits for the click, so the
        # page sees the job there however late the worker's status polls come on a loaded machine.
        clicked = threading.Event()
        stub.batch_timing = {"validating": 0.01, "per_line": 0.0, "finalizing": 0.01}

        def wait_for_the_click(line):
            clicked.wait(120)
            return None  # no fault: the line is answered

        stub.batch_line_fault = wait_for_the_click
        store = Store(db)
        store.save_seed_set("demo", [Seed("Explain why the sky is blue."), Seed("바다를 초보자에게 설명하세요.")])
        settings = stub_settings(db, stub)
        at = open_page(db, "runs", settings=settings)
        assert "as batch jobs: gpt-4o-mini" in texts(at) and "half of online" in texts(at)
        at.checkbox(key="run_as_batch").check().run()
        button(at, "Start run").click().run()
        run_id = store.latest_run_id()
        deadline = time.monotonic() + 180
        while not any(j["status"] == "in_progress" for j in store.batches(run_id)):
            job = worker.get(run_id)
            assert time.monotonic() < deadline, f"no batch job in progress ({job and job.status}: {job and job.error})"
            time.sleep(0.05)
        assert stub.count() <= 2  # the structured-output probe; the rest goes by batch
        at.run()
        assert "Batch: 1 job(s)" in texts(at)
        try:
            button(at, "Cancel batch job").click().run()
        finally:
            clicked.set()
        job = worker.wait(run_id, 60)
        assert job is not None and not job.alive and job.status == "stopped"
        assert store.batches(run_id)[0]["status"] == "cancelled"
        assert "cancelled" in store.get_run(run_id)["error"]
        at.run()
        button(at, "Resume to the end").click().run()  # resumes as batch jobs, as it ran
        job = worker.wait(run_id, 120)
        assert job.status == "finished", job.error
        assert stub.count() <= 2 and len(store.batches(run_id)) > 1
        assert app_support.batch_info(store, run_id)["uses_batch"]
