"""A stand-in for the Hugging Face Hub's HTTP API, for tests (standard library and PyYAML only).

    with HubStub(token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").create_repo("me/data", repo_type="dataset")
        hub.files("me/data")          # {path: bytes} on main
        hub.folder("me/data")         # the same files written to a folder (datasets.load_dataset reads it)

It answers the calls huggingface_hub 2.x makes for `create_repo`, `create_branch`, `create_commit` (and so
`upload_file` / `upload_folder`), read from its source (hf_api.py, _commit_api.py):
  POST /api/repos/create                          {name, organization, type, visibility} -> {url}; 409 when it
                                                  exists
  POST /api/validate-yaml                         {content, repoType} -> {warnings}; 400 {errors} (see below)
  POST /api/{type}s/{owner}/{name}/branch/{b}     a branch from main; 409 when it exists
  POST /api/{type}s/{owner}/{name}/preupload/{r}  {files: [{path, sample, size}]} -> each "regular", with the git oid
                                                  of the file already there (so an unchanged file is skipped)
  POST /api/{type}s/{owner}/{name}/commit/{r}     NDJSON: a header, then `file` (base64) and `deletedFile` lines;
                                                  applied all at once, as the Hub's commits are
  GET  /api/{type}s/{owner}/{name}[/revision/{r}] {id, sha, private, siblings}
Every write needs `Authorization: Bearer <token>` (401 otherwise). Files are always "regular" (sent inside the
commit): unlike the Hub, the stand-in has no LFS or Xet storage, so it holds files up to the 5 MB the client
sends that way.

The metadata check of README.md (validate-yaml) does what can be checked without the Hub's own lists: the YAML
parses to a mapping; `language` is a list of ISO 639 codes; `size_categories`, `task_categories` and `license`
are known values or shaped like them; every `configs` entry has a `config_name` and `data_files` of
{split, path}, at most one is the default, and (on commit) each path is a file of the repository.

Everything is recorded in `hub.requests` (method, path, headers with lower-case names, body bytes). Faults, for
testing interrupted pushes: `hub.fail_next("commit")` (or "preupload", "create", "branch") closes the next such
request's connection without an answer and changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

SIZE_CATEGORIES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T"}
TASK_CATEGORIES = {"text-generation", "question-answering", "text-classification", "summarization", "translation",
                   "conversational", "text2text-generation", "fill-mask", "sentence-similarity", "other"}
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_REPO_ROUTE = re.compile(r"^/api/(datasets|models|spaces)/([^/]+)/([^/]+)(?:/(preupload|commit|branch|revision)/(.+))?$")


def git_oid(content: bytes) -> str:
    """The git blob id the client compares with (huggingface_hub's sha.git_hash)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def front_matter(text: str) -> tuple[Any, str | None]:
    """(the YAML metadata of a README.md, an error message or None)."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not match:
        return {}, None
    try:
        return yaml.safe_load(match.group(1)), None
    except yaml.YAMLError as e:
        return None, f"YAML does not parse: {e}"


def metadata_errors(meta: Any, repo_files: set[str] | None = None) -> list[str]:
    """What the stand-in's validate-yaml reports for a card's metadata."""
    if meta is None or meta == {}:
        return []
    if not isinstance(meta, dict):
        return ["metadata must be a mapping"]
    errors = []
    langs = meta.get("language", [])
    for lang in [langs] if isinstance(langs, str) else langs or []:
        if not isinstance(lang, str) or not _LANGUAGE.fullmatch(lang):
            errors.append(f'"language" must be ISO 639 codes, not {lang!r}')
    for key, known in (("size_categories", SIZE_CATEGORIES), ("task_categories", TASK_CATEGORIES)):
        values = meta.get(key, [])
        for v in [values] if isinstance(values, str) else values or []:
            if v not in known:
                errors.append(f'"{key}" has an unknown value {v!r}')
    lic = meta.get("license")
    for v in [lic] if isinstance(lic, str) else lic or []:
        if not isinstance(v, str) or not _LICENSE.fullmatch(v):
            errors.append(f'"license" {v!r} is not a license id')
    configs = meta.get("configs")
    if configs is not None:
        if not isinstance(configs, list):
            return errors + ['"configs" must be a list']
        defaults = 0
        for c in configs:
            if not isinstance(c, dict) or not isinstance(c.get("config_name"), str):
                errors.append('each "configs" entry needs a "config_name"')
                continue
            defaults += bool(c.get("default"))
            files = c.get("data_files")
            files = [files] if isinstance(files, (str, dict)) else files
            if not files:
                errors.append(f'config {c["config_name"]!r} has no "data_files"')
            for f in files or []:
                path = f.get("path") if isinstance(f, dict) else f
                if not isinstance(path, str) or (isinstance(f, dict) and not isinstance(f.get("split"), str)):
                    errors.append(f'config {c["config_name"]!r}: data_files entries are {{split, path}}')
                elif repo_files is not None and path not in repo_files:
                    errors.append(f'config {c["config_name"]!r}: {path} is not a file of the repository')
        if defaults > 1:
            errors.append("at most one config can be the default")
    return errors


class _Repo:
    def __init__(self, repo_type: str, repo_id: str, private: bool):
        self.repo_type, self.repo_id, self.private = repo_type, repo_id, private
        self.branches: dict[str, dict[str, bytes]] = {"main": {}}
        self.commits: dict[str, list[str]] = {"main": []}

    def head(self, branch: str) -> str:
        return (self.commits.get(branch) or ["0" * 40])[-1]


class HubStub:
    def __init__(self, token: str = "hf_stub_token", host: str = "127.0.0.1"):
        self.token = token
        self.requests: list[dict[str, Any]] = []
        self.repos: dict[tuple[str, str], _Repo] = {}
        self._faults: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str) -> None:
        """Drop the next `kind` request ("create", "branch", "preupload", "commit") without an answer."""
        self._faults.append(kind)

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        repo = self.repos.get((repo_type, repo_id))
        return dict(repo.branches.get(revision, {})) if repo else {}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[str]:
        repo = self.repos.get((repo_type, repo_id))
        return list(repo.commits.get(revision, [])) if repo else []

    def folder(self, repo_id: str, out: str | Path, revision: str = "main", repo_type: str = "dataset") -> Path:
        """The repository's files at `revision`, written under `out` (a copy to read with datasets)."""
        out = Path(out)
        for path, content in self.files(repo_id, revision, repo_type).items():
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return out

    # -- the HTTP side ----------------------------------------------------------------------------------------
    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet under pytest
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status >= 400 and isinstance(payload, dict) and "error" in payload:
                    self.send_header("x-error-message", payload["error"])
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes) -> None:
                with stub._lock:
                    stub.requests.append({"method": self.command, "path": self.path,
                                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

            def _authorised(self) -> bool:
                if self.headers.get("authorization") == f"Bearer {stub.token}":
                    return True
                self._reply(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def _dropped(self, kind: str) -> bool:
                with stub._lock:
                    if kind in stub._faults:
                        stub._faults.remove(kind)
                        self.close_connection = True
                        self.connection.shutdown(2)  # the client sees the connection drop, no answer
                        return True
                return False

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._record(b"")
                m = _REPO_ROUTE.match(self.path.split("?")[0])
                if not m or m.group(4) not in (None, "revision"):
                    return self._reply(404, {"error": "Not found"})
                repo = stub.repos.get((m.group(1)[:-1], f"{m.group(2)}/{m.group(3)}"))
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"})
                branch = m.group(5) or "main"
                if branch not in repo.branches:
                    return self._reply(404, {"error": f"Invalid rev id: {branch}"})
                self._reply(200, {"id": repo.repo_id, "sha": repo.head(branch), "private": repo.private,
                                  "siblings": [{"rfilename": p} for p in sorted(repo.branches[branch])]})

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                self._record(body)
                path = self.path.split("?")[0]
                if path == "/api/validate-yaml":
                    meta, error = front_matter(json.loads(body).get("content", ""))
                    errors = [error] if error else metadata_errors(meta)
                    if errors:
                        return self._reply(400, {"error": "Invalid metadata", "errors": [{"message": e} for e in errors]})
                    return self._reply(200, {"warnings": []})
                if not self._authorised():
                    return None
                if path == "/api/repos/create":
                    if self._dropped("create"):
                        return None
                    req = json.loads(body)
                    repo_type = req.get("type") or "model"
                    repo_id = f"{req.get('organization')}/{req['name']}"
                    prefix = "" if repo_type == "model" else f"{repo_type}s/"
                    url = f"{stub.url}/{prefix}{repo_id}"
                    with stub._lock:
                        if (repo_type, repo_id) in stub.repos:
                            return self._reply(409, {"error": "You already created this repo", "url": url})
                        private = bool(req.get("private")) or req.get("visibility") == "private"
                        stub.repos[(repo_type, repo_id)] = _Repo(repo_type, repo_id, private)
                    return self._reply(200, {"url": url, "name": repo_id})
                m = _REPO_ROUTE.match(path)
                if not m or m.group(4) is None:
                    return self._reply(404, {"error": "Not found"})
                repo = stub.repos.get((m.group(1)[:-1], f"{m.group(2)}/{m.group(3)}"))
                if repo is None:
                    return self._reply(404, {"error": "Repository not found"})
                kind, revision = m.group(4), m.group(5)
                if self._dropped(kind):
                    return None
                if kind == "branch":
                    with stub._lock:
                        if revision in repo.branches:
                            return self._reply(409, {"error": "Reference already exists"})
                        repo.branches[revision] = dict(repo.branches["main"])
                        repo.commits[revision] = list(repo.commits["main"])
                    return self._reply(200, {})
                if revision not in repo.branches:
                    return self._reply(404, {"error": f"Invalid rev id: {revision}"})
                if kind == "preupload":
                    files = repo.branches[revision]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                         "oid": git_oid(files[f["path"]]) if f["path"] in files else None}
                        for f in json.loads(body)["files"]]})
                return self._commit(repo, revision, body)

            def _commit(self, repo: _Repo, revision: str, body: bytes) -> None:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                with stub._lock:
                    files = dict(repo.branches[revision])
                    for line in lines:
                        value = line.get("value", {})
                        if line["key"] == "file":
                            files[value["path"]] = base64.b64decode(value["content"])
                        elif line["key"] == "deletedFile":
                            files.pop(value["path"], None)
                        elif line["key"] not in ("header",):
                            return self._reply(400, {"error": f"The stand-in does not take {line['key']!r}"})
                    if "README.md" in files:
                        meta, error = front_matter(files["README.md"].decode("utf-8"))
                        errors = [error] if error else metadata_errors(meta, set(files))
                        if errors:
                            return self._reply(400, {"error": "Invalid metadata in README.md: " + "; ".join(errors)})
                    oid = hashlib.sha1(repo.head(revision).encode() + body).hexdigest()
                    repo.branches[revision] = files
                    repo.commits[revision].append(oid)
                prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
                self._reply(200, {"commitUrl": f"{stub.url}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid,
                                  "pullRequestUrl": None})

        return Handler
