"""Push a run's data set to the Hugging Face Hub: the chosen formats as data files plus the dataset card
(evolab/export/card.py), in ONE commit through huggingface_hub (`create_repo`, `create_branch`, `create_commit`).

A Hub commit is all or nothing: a push that fails halfway (the network drops, the token lacks a right) leaves the
repository as it was, or at most created and empty, and the same push again finishes it (files already there and
unchanged are skipped). The token is read from an environment variable the caller names and goes to the Hub in the
Authorization header only: never into the card, the files, the store, a log line or an error message.
`HF_ENDPOINT` (huggingface_hub's own setting) points the push at another Hub, read when the push starts.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from evolab.export.card import FORMAT_FILES, dataset_card, license_problem, write_card
from evolab.export.formats import FORMATS, write_export
from evolab.llm import base as llm_base
from evolab.llm.base import mask_secrets, redact_url
from evolab.llm.openai_backend import KEY_VARS_ENV, owner_key_vars, secret_family
from evolab.store import Store

DEFAULT_TOKEN_ENV = "HF_TOKEN"
DEFAULT_ENDPOINT = "https://huggingface.co"
# The token variables the app may read for a push: the Hub's own names or one the server's owner lists in
# EVOLAB_KEY_VARS, never an LLM key (*_API_KEY: it would go to the Hub) nor another service's secret family.
HUB_TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HubError(Exception):
    """A push that could not start or did not finish; the message says what to do (never the token)."""


@dataclass
class PushResult:
    repo_id: str
    url: str
    revision: str
    commit: str | None
    files: dict[str, int] = field(default_factory=dict)  # path in the repo -> records (the card: 0)


def repo_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` is not a Hub repository name OWNER/NAME (None when it is)."""
    if _REPO_ID.fullmatch(repo_id or "") and ".." not in repo_id and "--" not in repo_id:
        return None
    return (f"--to-hub {repo_id!r}: give the repository as OWNER/NAME (letters, digits, '-', '_' and '.', at most 96 "
            "each, e.g. my-org/evolved-finance).")


def token_env_problem(name: str, *, app: bool = False) -> str | None:
    """Why the token may not be read from the variable `name`. The CLI reads any variable its user names; the app
    (`app=True`) only HF_TOKEN, HUGGING_FACE_HUB_TOKEN or a name the server's owner lists in EVOLAB_KEY_VARS, and
    never an LLM key or a known secret family (whoever opens the page does not choose what the server sends)."""
    name = (name or "").strip()
    if not _ENV_NAME.fullmatch(name):
        return (f"{name!r} is not a variable name: give the NAME of the environment variable that holds the Hub token "
                f"(default {DEFAULT_TOKEN_ENV}), never the token itself.")
    if not app:
        return None
    family = secret_family(name)
    if family:
        return f"The app never reads {name!r}: {family}_* variables hold another service's credentials."
    if name in HUB_TOKEN_NAMES or name in owner_key_vars():
        if name.upper().endswith("_API_KEY") and name not in owner_key_vars():
            return f"{name!r} looks like an LLM key, which never goes to the Hub."
        return None
    return (f"The app reads the Hub token only from {' or '.join(HUB_TOKEN_NAMES)} or a variable the server's owner "
            f"lists in {KEY_VARS_ENV}; {name!r} is neither.")


def read_token(name: str = DEFAULT_TOKEN_ENV, *, app: bool = False) -> str:
    """The token in the variable `name`, or HubError saying how to give one."""
    problem = token_env_problem(name, app=app)
    if problem:
        raise HubError(problem)
    token = os.environ.get(name.strip(), "").strip()
    if not token:
        raise HubError(f"No Hub token in {name}: create a write token at <Hub>/settings/tokens and set it where "
                       f"evolab runs (export {name}=...), or name another variable with --token-env.")
    llm_base._KNOWN_SECRETS.add(token)  # masked wherever it would appear (logs, job errors), like the LLM keys
    return token


def hub_endpoint() -> str:
    """Where pushes go: HF_ENDPOINT when set (another Hub, a mirror, a test's stand-in), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def check_formats(formats: Iterable[str]) -> list[str]:
    formats = [f.strip() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise HubError(f"--format {','.join(formats) or '(none)'}: choose one or more of {', '.join(FORMATS)} "
                       "(comma-separated).")
    return list(dict.fromkeys(formats))


def stage_files(store: Store, run_id: str, folder: Path, formats: list[str], *, select: dict | None = None,
                license: str | None = None, repo_id: str | None = None) -> dict[str, int]:
    """Write the data files (FORMAT_FILES layout) and README.md (the card) into `folder`; path -> records."""
    select = select or {}
    counts: dict[str, int] = {}
    for fmt in formats:
        path = folder / FORMAT_FILES[fmt]
        path.parent.mkdir(parents=True, exist_ok=True)
        counts[fmt] = write_export(store, run_id, fmt, path, **select)
    card = dataset_card(store, run_id, formats, counts=counts, license=license, repo_id=repo_id, select=select)
    write_card(card, folder / "README.md")
    return {**{FORMAT_FILES[f]: n for f, n in counts.items()}, "README.md": 0}


def push_run(store: Store, run_id: str, repo_id: str, *, token: str, formats: Iterable[str] = ("alpaca",),
             select: dict | None = None, private: bool = False, revision: str | None = None,
             license: str | None = None, endpoint: str | None = None,
             progress: Callable[[str], None] | None = None) -> PushResult:
    """Push the run's data set as one commit to the dataset repository `repo_id` (created when missing, `private`
    then) on branch `revision` (created from main when missing). Returns what was pushed; raises HubError with
    what to do when the push did not finish."""
    problem = repo_id_problem(repo_id) or license_problem(license)
    if problem:
        raise HubError(problem)
    if not token:
        raise HubError("No Hub token: set HF_TOKEN (or name the variable with --token-env).")
    formats = check_formats(formats)
    # huggingface_hub: imported where a push starts (its API module takes about half a second to load)
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError  # (the same library, as above)

    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    say = progress or (lambda _msg: None)
    api = HfApi(endpoint=endpoint, token=token, library_name="evolab")
    with tempfile.TemporaryDirectory(prefix="evolab-hub-") as tmp:
        folder = Path(tmp)
        files = stage_files(store, run_id, folder, formats, select=select, license=license, repo_id=repo_id)
        say(f"prepared {', '.join(f'{p} ({n} records)' if n else p for p, n in files.items())}")
        step = "creating the repository"
        try:
            say(f"{step} {repo_id} on {redact_url(endpoint)}")
            url = str(api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
            if revision and revision != "main":
                step = f"creating the branch {revision}"
                api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
            step = "committing the files"
            say(f"{step} ({len(files)} files, one commit)")
            operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in files]
            info = api.create_commit(repo_id, operations, repo_type="dataset", revision=revision,
                                     commit_message=f"evolab: run {run_id} ({', '.join(formats)})",
                                     commit_description="Data files and dataset card written by evolab.")
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise HubError(_failure_message(step, repo_id, e, token)) from None
        except Exception as e:  # the HTTP client's own errors (a dropped connection, a timeout)
            if type(e).__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore", "httpcore2", "requests",
                                                        "urllib3"):
                raise
            raise HubError(_failure_message(step, repo_id, e, token)) from None
    return PushResult(repo_id, url, revision or "main", info.oid, files)


def _failure_message(step: str, repo_id: str, error: Exception, token: str) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    text = mask_secrets(str(error).replace(token, "***")).splitlines()[0] if str(error) else type(error).__name__
    hint = {401: "the token was refused: check it is a write token for this Hub",
            403: f"the token may not write to {repo_id.split('/')[0]}: use a token with write access to it",
            404: "the repository or branch is not there for this token"}.get(status, "")
    return (f"The push stopped while {step} ({text}{'; ' + hint if hint else ''}). Nothing half-written stays on "
            "the Hub: a commit is all or nothing. Run the same command again to finish it.")
