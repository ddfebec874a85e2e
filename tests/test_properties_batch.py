"""Property-based tests (issue 22): batch import over arbitrary JSONL lines (valid, truncated, wrong types, huge
numbers, nested, not UTF-8) either imports or raises the project's own error naming the line; never a traceback,
never a cached reply that is not text, nothing written when it refuses."""
from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from evolab.engine import batch
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from test_batch import make_run, run_lines_like_vllm, varied_reply

EXAMPLES = 200

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30) \
    | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
counts = st.integers(min_value=0, max_value=5000) | st.integers(min_value=-(10 ** 6), max_value=-1) \
    | st.integers(min_value=2 ** 53, max_value=10 ** 40) | json_values
contents = st.text(max_size=40) | st.none() | json_values \
    | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "output_text", "refusal", "image_url"]),
                                      "text": st.text(max_size=10) | json_scalars}), max_size=3)


def result_line(custom_ids: st.SearchStrategy) -> st.SearchStrategy:
    """A batch result, each field valid or not."""
    message = st.fixed_dictionaries({"role": st.just("assistant"), "content": contents}) | json_values
    choice = st.fixed_dictionaries({"message": message},
                                   optional={"finish_reason": st.sampled_from(["stop", "length"]) | json_values})
    usage = st.fixed_dictionaries({}, optional={
        "prompt_tokens": counts, "completion_tokens": counts,
        "completion_tokens_details": st.fixed_dictionaries({"reasoning_tokens": counts}) | json_values}) | json_values
    body = st.fixed_dictionaries({"choices": st.lists(choice, min_size=1, max_size=2) | json_values},
                                 optional={"usage": usage, "model": st.just("gpt-4o-mini") | json_values}) | json_values
    response = st.fixed_dictionaries({"status_code": st.sampled_from([200, 200, 200, 400, 500]) | json_values,
                                      "body": body}) | json_values
    return st.fixed_dictionaries({"custom_id": custom_ids, "response": response},
                                 optional={"error": st.none() | json_values, "id": st.text(max_size=5)})


def raw_line(custom_ids: st.SearchStrategy) -> st.SearchStrategy:
    """One line of bytes: a result serialised (whole or cut short), arbitrary JSON, arbitrary bytes, deep nesting."""
    serialised = result_line(custom_ids).map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"))
    truncated = st.tuples(serialised, st.integers(min_value=0, max_value=200)).map(lambda t: t[0][:t[1]])
    deep = st.integers(min_value=1, max_value=200_000).map(lambda n: b'{"custom_id": "x", "response": '
                                                           + b"[" * n + b"]" * n + b"}")
    other = json_values.map(lambda v: json.dumps(v).encode("utf-8"))
    return st.one_of(serialised, serialised, serialised, truncated, deep, other,
                     st.binary(max_size=40).filter(lambda b: b"\n" not in b), st.just(b""))


def as_file(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def check_answers(answered: dict) -> None:
    for comp in answered.values():
        assert isinstance(comp.text, str) and isinstance(comp.model, str)
        for n in (comp.prompt_tokens, comp.completion_tokens, comp.reasoning_tokens):
            assert type(n) is int and 0 <= n <= batch.MAX_TOKEN_COUNT
        assert comp.finish_reason is None or isinstance(comp.finish_reason, str)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_line(st.text(max_size=12) | json_values), max_size=6))
def test_read_results_reads_or_names_the_bad_line(lines):
    data = as_file(lines)
    try:
        answered, failed = batch.read_results(data, "f.jsonl")
    except batch.ResultsFileError as e:
        event("refused, naming the line")
        message = str(e)
        assert message.startswith("Line ") and " of f.jsonl is not a batch result: " in message
        n = int(message.split()[1])
        assert 1 <= n <= len(lines)
        batch.read_results(as_file(lines[:n - 1]), "f.jsonl")  # the lines before it are fine
        with pytest.raises(batch.ResultsFileError, match="^Line 2 of"):  # and that one is not (after a blank line:
            batch.read_results(as_file([b"", *lines[n - 1:n]]), "f.jsonl")  # a BOM is only the first line's)
    else:
        event("read")
        check_answers(answered)
        assert all(isinstance(k, str) for k in (*answered, *failed)) and not set(answered) & set(failed)
    problems: list[str] = []  # a provider's file: never raises, names each bad line
    answered, failed = batch.read_results(data, "f.jsonl", problems)
    check_answers(answered)
    assert all(p.startswith("Line ") for p in problems)


# -- the whole import, into a store --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A store whose run has its first stage exported: (db, the request lines' custom_ids, good result lines)."""
    tmp = tmp_path_factory.mktemp("exported")
    with StubServer(handler=varied_reply) as stub:
        store = Store(tmp / "b.db")
        make_run(store, stub, rounds=1, concurrency=2)
        batch.export_requests(store, "run-a", tmp / "req.jsonl")
        run_lines_like_vllm(stub, tmp / "req.jsonl", tmp / "out.jsonl")
        store.close()
        ids = [json.loads(x)["custom_id"] for x in (tmp / "req.jsonl").read_text(encoding="utf-8").splitlines()]
        good = (tmp / "out.jsonl").read_bytes().splitlines()
        yield tmp / "b.db", ids, good


def _mutate(drawn: tuple) -> bytes:
    """A good result line with its content replaced, and its prompt_tokens too unless None was drawn."""
    raw, content, prompt_tokens = drawn
    line = json.loads(raw)
    line["response"]["body"]["choices"][0]["message"]["content"] = content
    if prompt_tokens is not None:
        line["response"]["body"]["usage"]["prompt_tokens"] = prompt_tokens
    return json.dumps(line, ensure_ascii=False).encode("utf-8")


def snapshot(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("cache", "calls", "nodes", "scores", "batches", "batch_lines", "runs")}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_import_imports_or_names_the_line_and_never_caches_what_is_not_text(exported_run, data):
    db, ids, good = exported_run
    ours = st.sampled_from(ids)
    mutated = st.tuples(st.sampled_from(good), contents, st.none() | counts).map(_mutate)  # one field changed
    lines = data.draw(st.lists(st.sampled_from(good) | mutated | mutated | raw_line(ours | st.text(max_size=8)),
                               max_size=8))
    with tempfile.TemporaryDirectory() as tmp:
        copy, results = Path(tmp) / "b.db", Path(tmp) / "results.jsonl"
        shutil.copy(db, copy)
        results.write_bytes(as_file(lines))
        before = snapshot(copy)
        store = Store(copy)
        try:
            summary = batch.import_results_file(store, "run-a", results)
        except batch.ResultsFileError as e:
            event("refused, naming the line")
            assert str(e).startswith("Line ") and f" of {results} is not a batch result" in str(e)
            store.close()
            assert snapshot(copy) == before  # checked before anything was written
            return
        event(f"imported: {'some answers' if summary['answered'] else 'no answer'}, "
              f"{'some failed lines' if summary['failed'] else 'no failed line'}")
        store.flush()
        texts = [json.loads(r[0]) for r in store.query("SELECT response_json FROM cache")]
        assert all(isinstance(t["text"], str) for t in texts)
        assert all(c.cost_usd >= 0 and c.prompt_tokens >= 0 and c.completion_tokens >= 0
                   for c in store.calls("run-a"))
        assert summary["answered"] + summary["failed"] + summary["unknown"] <= len(lines)
        store.close()
