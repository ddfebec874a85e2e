"""What the Export page's sharing sections do, without Streamlit: the dataset card, a push to the Hub as a background
job of the app's registry, and the slide deck, each opening its own Store (pages pass the store's path)."""
from __future__ import annotations

from evolab.app import jobs
from evolab.app.jobs import Job
from evolab.export import slides
from evolab.export.card import dataset_card
from evolab.export.hub import HubError, PushResult, check_formats, push_run, read_token, repo_id_problem
from evolab.store import Store

HUB = "hub"


def card(db_path: str, run_id: str, formats: list[str], license: str | None, select: dict, repo_id: str | None = None):
    """The dataset card the Hub would get (a DatasetCard: `.text` is the body, `str()` the whole README.md)."""
    store = Store(db_path)
    try:
        return dataset_card(store, run_id, formats, license=license or None, select=select, repo_id=repo_id)
    finally:
        store.close()


def card_file(db_path: str, run_id: str, formats: list[str], license: str | None, select: dict) -> bytes:
    return str(card(db_path, run_id, formats, license, select)).encode("utf-8")


def deck_file(db_path: str, run_id: str) -> bytes:
    """The run's slide deck (.pptx), built when the download button is pressed."""
    store = Store(db_path)
    try:
        return slides.deck_bytes(store, run_id)
    finally:
        store.close()


def push_job(run_id: str) -> Job | None:
    return jobs.get(HUB, run_id)


def start_push(db_path: str, run_id: str, repo_id: str, *, token_env: str, formats: list[str], select: dict,
               private: bool = False, revision: str | None = None, license: str | None = None) -> Job:
    """Check the push (HubError with what to fix) and run it in a worker thread; `job.result` is a PushResult.
    The token is read here, under the app's rules for variable names, and kept only inside the job's closure."""
    problem = repo_id_problem(repo_id)
    if problem:
        raise HubError(problem.replace("--to-hub ", "The repository "))
    formats = check_formats(formats)
    token = read_token(token_env, app=True)

    def work(store: Store, job: Job) -> PushResult:
        return push_run(store, run_id, repo_id, token=token, formats=formats, select=select, private=private,
                        revision=revision or None, license=license or None,
                        progress=lambda msg: job.progress.update(step=msg))

    return jobs.start(HUB, run_id, work, db_path=db_path, shown=(HubError,), repo_id=repo_id)
