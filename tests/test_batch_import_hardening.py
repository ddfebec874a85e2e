"""Issue 22, findings 4 and 9: batch results evolab cannot read are never cached, a bad results file is named
(file and line, exit 2) before anything is written, a run with an unreadable cached reply (an older version's)
goes on, and a batch job is recorded durably before it is submitted."""
from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from evolab.cli.main import main as cli_main
from evolab.engine import batch, pipeline
from evolab.llm import FakeBackend
from evolab.llm.client import LLMClient, request_key
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from test_batch import FAST, ROOT, cli_env, make_run, online_and_batched, run_lines_like_vllm, tree, varied_reply


def results_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_bytes().split(b"\n") if x.strip()]


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def cache_texts(store: Store) -> list:
    store.flush()
    return [json.loads(r[0]).get("text") for r in store.query("SELECT response_json FROM cache")]


def snapshot(db: Path) -> dict:
    """Everything an import could write."""
    with sqlite3.connect(db) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("cache", "calls", "nodes", "scores", "batches", "batch_lines", "runs", "meta")}


def export_import_until_done(store: Store, stub, tmp_path: Path, first_results=None) -> list[dict]:
    """The export/import loop; `first_results(lines)` rewrites the first results file. The summaries."""
    summaries = []
    for stage in range(1, 30):
        req, out = tmp_path / f"req{stage}.jsonl", tmp_path / f"out{stage}.jsonl"
        if batch.export_requests(store, "run-a", req) == 0:
            break
        run_lines_like_vllm(stub, req, out)
        if stage == 1 and first_results is not None:
            write_lines(out, first_results(results_lines(out)))
        summaries.append(batch.import_results_file(store, "run-a", out))
    return summaries


# -- finding 4: a reply that is not text ------------------------------------------------------------------
@pytest.mark.parametrize("content", [5, {"text": "a dict"}, [1, 2], True, [{"type": "image_url", "image_url": {}}]])
def test_a_reply_whose_content_is_not_text_is_not_cached_and_is_asked_again(tmp_path, content):
    """Before: the number was cached and every later pass crashed ('int' object has no attribute 'strip')."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1, random_seed=3)

        def corrupt(lines):
            lines[0]["response"]["body"]["choices"][0]["message"]["content"] = content
            return lines

        summaries = export_import_until_done(batched, stub, tmp_path, corrupt)
        assert summaries[0]["failed"] == 1  # a failed line for that request, sent again in the next export
        assert batched.get_run("run-a")["status"] == "finished"
        assert all(isinstance(t, str) for t in cache_texts(batched))
        assert tree(batched, "run-a") == tree(online, "run-a")
        errors = [c.error for c in batched.calls("run-a") if c.error]
        assert not errors


def test_a_reply_as_a_list_of_text_parts_is_joined(tmp_path):
    """OpenAI's content parts ([{"type": "text", "text": ...}]) are read as their text, joined."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1, random_seed=3)

        def as_parts(lines):
            for line in lines:
                message = line["response"]["body"]["choices"][0]["message"]
                text = message["content"]
                message["content"] = [{"type": "text", "text": text[:7]}, {"type": "text", "text": text[7:]}]
            return lines

        summaries = export_import_until_done(batched, stub, tmp_path, as_parts)
        assert summaries[0]["failed"] == 0
        assert tree(batched, "run-a") == tree(online, "run-a")


def test_a_line_separator_inside_a_reply_does_not_split_the_line(tmp_path):
    """U+2028 is a line break for str.splitlines, not for JSONL (a server writing UTF-8 leaves it as is)."""
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        batch.export_requests(store, "run-a", tmp_path / "req.jsonl")
        run_lines_like_vllm(stub, tmp_path / "req.jsonl", tmp_path / "out.jsonl")
        lines = results_lines(tmp_path / "out.jsonl")
        lines[0]["response"]["body"]["choices"][0]["message"]["content"] += "\u2028and on\u2029"
        write_lines(tmp_path / "out.jsonl", lines)
        summary = batch.import_results_file(store, "run-a", tmp_path / "out.jsonl")
        assert summary["answered"] == len(lines) and summary["failed"] == 0
        assert any(t.endswith("\u2028and on\u2029") for t in cache_texts(store))


# -- finding 4: bad results files, exit 2 naming the file and line, nothing written ------------------------
def _deep(n: int) -> str:
    """A line whose usage is a list nested n deep."""
    return ('{"custom_id": "evolve:x", "response": {"status_code": 200, "body": {"choices": [{"message": '
            '{"content": "hi"}}], "usage": {"prompt_tokens": ' + "[" * n + "]" * n + "}}}}")


BAD_FILES = {
    # name: (how to break the good file's lines, the line named)
    "usage is text": (lambda ls: _set(ls, 0, ("response", "body", "usage", "prompt_tokens"), "abc"), 1),
    "usage object is text": (lambda ls: _set(ls, 1, ("response", "body", "usage"), "abc"), 2),
    "negative usage": (lambda ls: _set(ls, 2, ("response", "body", "usage", "completion_tokens"), -500), 3),
    "negative reasoning tokens": (lambda ls: _set(ls, 0, ("response", "body", "usage", "completion_tokens_details"),
                                                  {"reasoning_tokens": -1}), 1),
    "huge usage": (lambda ls: _set(ls, 1, ("response", "body", "usage", "prompt_tokens"), 10 ** 30), 2),
    "fractional usage": (lambda ls: _set(ls, 1, ("response", "body", "usage", "prompt_tokens"), 1.5), 2),
    "custom_id is a list": (lambda ls: _set(ls, 1, ("custom_id",), ["evolve", "x"]), 2),
    "custom_id missing": (lambda ls: [ls[0], {k: v for k, v in ls[1].items() if k != "custom_id"}, *ls[2:]], 2),
    "deeply nested line": (lambda ls: [*ls[:2], _deep(100_000), *ls[2:]], 3),
    "nested just under the parser's limit": (lambda ls: [*ls[:2], _deep(900), *ls[2:]], 3),
    "truncated line": (lambda ls: [ls[0], json.dumps(ls[1])[:40], *ls[2:]], 2),
    "a line that is a list": (lambda ls: [ls[0], [ls[1]], *ls[2:]], 2),
    "response is text": (lambda ls: _set(ls, 0, ("response",), "ok"), 1),
    "status code is text": (lambda ls: _set(ls, 0, ("response", "status_code"), "200"), 1),
}


def _set(lines: list, i: int, path: tuple, value) -> list:
    target = lines[i]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return lines


@pytest.fixture
def exported(tmp_path):
    """A run with its first stage exported and answered: (db, the good results' lines)."""
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "b.db")
        make_run(store, stub, rounds=1)
        batch.export_requests(store, "run-a", tmp_path / "req.jsonl")
        run_lines_like_vllm(stub, tmp_path / "req.jsonl", tmp_path / "out.jsonl")
        store.close()
        yield tmp_path / "b.db", results_lines(tmp_path / "out.jsonl")


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_results_file_exits_2_naming_the_line_and_writes_nothing(exported, tmp_path, capsys, name):
    db, lines = exported
    breaks, line_no = BAD_FILES[name]
    path = write_lines(tmp_path / "bad.jsonl", breaks(lines))
    before = snapshot(db)
    assert cli_main(["batch", "import", "--db", str(db), "--results", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"Line {line_no} of {path}" in err
    assert snapshot(db) == before


@pytest.mark.parametrize("name", ["missing", "a folder", "not UTF-8", "a device"])
def test_a_results_file_that_cannot_be_read_exits_2_naming_it(exported, tmp_path, capsys, name):
    db, lines = exported
    if name == "missing":
        path = tmp_path / "no-such.jsonl"
    elif name == "a folder":
        path = tmp_path / "folder.jsonl"
        path.mkdir()
    elif name == "a device":
        path = Path("/dev/zero")  # read until memory ran out
    else:
        path = write_lines(tmp_path / "latin1.jsonl", lines)
        path.write_bytes(path.read_bytes().replace(b"\n", b"\n\xe9\xe9\n", 1))
    before = snapshot(db)
    assert cli_main(["batch", "import", "--db", str(db), "--results", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    if name == "not UTF-8":
        assert f"Line 2 of {path}" in err and "UTF-8" in err
    assert snapshot(db) == before


def test_a_failed_line_keeps_its_error_and_an_unknown_line_is_ignored(exported, tmp_path, capsys):
    """Lines the service failed (an `error` object, a status other than 200) are failed lines, not a bad file."""
    db, lines = exported
    lines[0]["response"] = None
    lines[0]["error"] = {"code": "server_error", "message": "boom"}
    lines[1]["response"]["status_code"] = 500
    lines[1]["response"]["body"] = {"error": {"message": "overloaded"}}
    lines.append({"custom_id": "evolve:not-ours", "response": {"status_code": 200, "body": {"choices": []}}})
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    assert cli_main(["batch", "import", "--db", str(db), "--results", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(lines) - 3} answers imported, 2 failed lines, 1 lines not asked for" in out
    with sqlite3.connect(db) as conn:
        errors = {r[0] for r in conn.execute("SELECT error FROM batch_lines WHERE status='failed'")}
    assert errors == {"server_error: boom", "HTTP 500: overloaded"}


# -- finding 4: the live batch path ------------------------------------------------------------------------
class CorruptingTransport(batch.OpenAIBatches):
    """The stub's batch API, with the first result file's lines broken: a number for content, negative usage, a
    line that is not JSON."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.broken = False

    def content(self, file_id: str) -> bytes:
        data = super().content(file_id)
        if self.broken:
            return data
        self.broken = True
        lines = [json.loads(x) for x in data.decode("utf-8").splitlines()]
        lines[0]["response"]["body"]["choices"][0]["message"]["content"] = 42
        lines[1]["response"]["body"]["usage"]["prompt_tokens"] = -1000
        raw = [json.dumps(x, ensure_ascii=False) for x in lines]
        raw[2] = raw[2][:30]
        return ("\n".join(raw) + "\n").encode("utf-8")


def test_a_live_job_with_unreadable_lines_sends_them_again(tmp_path):
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1, random_seed=3)
        transport = CorruptingTransport(batched.get_run("run-a")["config"])
        log: list[str] = []
        assert batch.run_batched(batched, "run-a", transport=transport, options=FAST, log=log.append) == "finished"
        assert transport.broken
        named = [m for m in log if "Line " in m]  # the lines that are no batch result are named
        assert [m.split(" of ")[0] for m in named] == ["Line 2", "Line 3"]
        assert "usage.prompt_tokens must be a whole number of tokens, 0 or more, not -1000" in named[0]
        with sqlite3.connect(tmp_path / "batch.db") as conn:
            errors = [r[0] for r in conn.execute("SELECT error FROM batch_lines WHERE status='failed'")]
        assert len(errors) == 3  # each sent again in the next job, and answered there
        assert "unreadable reply: the content is a number, not text: 42" in errors
        assert all(isinstance(t, str) for t in cache_texts(batched))
        assert tree(batched, "run-a") == tree(online, "run-a")
        assert min(c.cost_usd for c in batched.calls("run-a")) >= 0
        assert batched.run_cost("run-a") >= 0


# -- finding 4: a store an older version wrote --------------------------------------------------------------
def test_a_cached_reply_that_is_not_text_is_asked_again_and_said(tmp_path, caplog):
    """An older evolab cached a batch reply's number as the reply: the lookup takes it as a miss, says so, and
    the answer that comes back replaces it."""
    store = Store(tmp_path / "c.db")
    backend = FakeBackend()
    client = LLMClient(backend, store)
    messages = [{"role": "user", "content": "hello"}]
    key = request_key(backend.model, messages, 0.0, 64, endpoint=client.endpoint)
    store.cache_put(key, backend.model, {"text": 42, "model": backend.model, "prompt_tokens": 1,
                                         "completion_tokens": 1, "latency_s": 0.0})
    with caplog.at_level(logging.WARNING):
        comp = pipeline.asyncio.run(client.complete(messages, purpose="respond", max_tokens=64))
    assert isinstance(comp.text, str) and comp.text and not comp.cached
    assert any("could not be read" in r.getMessage() and key[:12] in r.getMessage() for r in caplog.records)
    store.flush()
    assert isinstance(store.cache_get(key)["text"], str)


def test_a_batch_run_with_an_older_versions_unreadable_cached_reply_goes_on(tmp_path):
    """The run from finding 4, stuck before: `batch export` writes the request again and the run finishes."""
    with StubServer(handler=varied_reply) as stub:
        online, batched = online_and_batched(tmp_path, stub, rounds=1, random_seed=3)
        batch.export_requests(batched, "run-a", tmp_path / "req1.jsonl")
        run_lines_like_vllm(stub, tmp_path / "req1.jsonl", tmp_path / "out1.jsonl")
        batch.import_results_file(batched, "run-a", tmp_path / "out1.jsonl")
        first = results_lines(tmp_path / "out1.jsonl")[0]["custom_id"]
        key = first.split(":", 1)[1]
        with sqlite3.connect(tmp_path / "batch.db") as conn:  # what an older version cached
            conn.execute("UPDATE cache SET response_json=json_set(response_json, '$.text', 42) WHERE key=?", (key,))
        r = subprocess.run([sys.executable, "-m", "evolab", "batch", "export", "--db", tmp_path / "batch.db", "--out",
                            tmp_path / "req2.jsonl"], cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"The cached reply to request {key[:12]} could not be read" in r.stderr
        assert first in {x["custom_id"] for x in results_lines(tmp_path / "req2.jsonl")}
        (tmp_path / "more").mkdir()
        export_import_until_done(batched, stub, tmp_path / "more")
        assert batched.get_run("run-a")["status"] == "finished"
        assert all(isinstance(t, str) for t in cache_texts(batched))
        assert tree(batched, "run-a") == tree(online, "run-a")


# -- finding 9: the job is in the file, durably, before it is submitted -------------------------------------
class RecordingTransport(batch.OpenAIBatches):
    """The stub's batch API; at each create, what the store's connection had executed and what another
    connection sees."""

    def __init__(self, config, store: Store, statements: list[str]):
        super().__init__(config)
        self.store, self.statements, self.at_create = store, statements, []

    def create(self, input_file_id: str):
        with sqlite3.connect(self.store.path) as other:
            seen = other.execute("SELECT id, input_file_id, status FROM batches WHERE provider_batch_id IS NULL "
                                 "AND imported=0").fetchall()
        self.at_create.append((list(self.statements), seen, input_file_id))
        self.statements.append(f"-- create {input_file_id}")
        return super().create(input_file_id)


def test_a_batch_job_is_recorded_with_full_sync_before_it_is_submitted(tmp_path):
    """The job's row commits with synchronous=FULL (WAL with NORMAL may lose the last commits on a power loss)
    before the create call reaches the provider; the provider's id commits with FULL right after."""
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp_path / "d.db")
        make_run(store, stub, rounds=1)
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        transport = RecordingTransport(store.get_run("run-a")["config"], store, statements)
        assert batch.run_batched(store, "run-a", transport=transport, options=FAST) == "finished"
        store._conn.set_trace_callback(None)
        assert transport.at_create
        for before, seen, file_id in transport.at_create:
            assert [row[1] for row in seen] == [file_id]  # committed: another connection sees it
            insert = max(i for i, s in enumerate(before) if s.startswith("INSERT INTO batches"))
            assert _sync_at(before, insert) == "FULL"
            commit = next(i for i in range(insert, len(before)) if before[i] == "COMMIT")
            assert _sync_at(before, commit) == "FULL"
        # The provider id: the first UPDATE after each create, committed under FULL.
        for i, s in enumerate(statements):
            if s.startswith("-- create"):
                update = next(j for j in range(i, len(statements)) if statements[j].startswith("UPDATE batches"))
                commit = next(j for j in range(update, len(statements)) if statements[j] == "COMMIT")
                assert _sync_at(statements, update) == _sync_at(statements, commit) == "FULL"
        assert all(j["provider_batch_id"] for j in store.batches("run-a"))


def _sync_at(statements: list[str], i: int) -> str:
    """The synchronous setting in force at statement i (the store opens with NORMAL)."""
    setting = "NORMAL"
    for s in statements[:i]:
        if s.upper().startswith("PRAGMA SYNCHRONOUS="):
            setting = s.split("=", 1)[1].strip().upper()
    return setting
