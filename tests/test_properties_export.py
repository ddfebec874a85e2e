"""Property-based tests (hypothesis) of the exports, issue 22: for any texts a run can hold (NULs, BOMs, control
characters, mixed scripts, huge words, Markdown, quotes and brackets) every format writes a file that parses back to
exactly the stored texts, and nothing else is left in the folder; when writing fails part-way (a record that cannot
be written, a full disk) the call raises, the output path does not exist (or keeps its earlier content) and no
temporary file is left: never a partial output file.

Examples per property: 200 (the failure-injection property 100); see the fault matrix (docs/fault-matrix.md).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolab.engine.runconfig import build_run_config
from evolab.export import formats
from evolab.export.formats import FORMATS, write_export
from evolab.schema import KEPT, SEED, Node, Seed
from evolab.store import Store

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NASTY = ["\x00", "\ufeff", "\u200b", "\u2028", "\x1b[31m", "\r\n", "\t", "\\", '"', "'", "]", "}", "![x](http://e/x.png)",
         "<script>", "한국어", "Ωμέγα", "مرحبا", "🙂", "x" * 3000, "   ", "...", "\x7f"]
# Texts a store can hold: any string without lone surrogates (SQLite stores UTF-8).
TEXT = st.lists(st.one_of(st.sampled_from(NASTY), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)),
                max_size=12).map("".join)


def _store_with(folder: Path, texts: list[tuple[str, str, str]]) -> tuple[Store, str]:
    store = Store(folder / "e.db")
    config = build_run_config(model="fake", base_url=None, api_key_env=None, rounds=1, fanout=1, ops=None)
    run_id = store.create_run(config, [Seed(t[0] or "x") for t in texts])
    nodes = []
    for i, (instruction, input_text, response) in enumerate(texts):
        root = f"{run_id}-s{i}"
        nodes.append(Node(id=root, run_id=run_id, parent_id=None, root_id=root, round=0, operation="seed",
                          instruction=instruction, input=input_text, response=response, status=SEED))
        nodes.append(Node(id=f"{root}-c", run_id=run_id, parent_id=root, root_id=root, round=1,
                          operation="deepen", instruction=response + instruction, input=input_text,
                          response=instruction, status=KEPT, detail=input_text))
    store.save_nodes(nodes)
    return store, run_id


def _read(path: Path, fmt: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if fmt in ("alpaca", "sharegpt"):
        return json.loads(text)
    return [json.loads(line) for line in text.split("\n") if line]  # not splitlines(): U+2028 stays in a line


def _instructions(records: list[dict], fmt: str) -> list[str]:
    if fmt == "alpaca":
        return [r["instruction"] for r in records]
    if fmt == "sharegpt":
        return [r["conversations"][0]["value"] for r in records]
    if fmt == "openai":
        return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in records]
    return [r["instruction"] for r in records]


ROWS = st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=4)


@SETTINGS
@given(rows=ROWS, fmt=st.sampled_from(FORMATS))
def test_any_texts_export_to_a_file_that_parses_back(rows, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, run_id = _store_with(folder, rows)
        try:
            out = folder / "out" / f"export.{fmt}"
            out.parent.mkdir()
            count = write_export(store, run_id, fmt, out, status="all")
            records = _read(out, fmt)
        finally:
            store.close()
        assert count == len(records) == 2 * len(rows)
        assert os.listdir(out.parent) == [out.name]  # no temporary file left
        got = _instructions(records, fmt)
        expected = [r[0] for r in rows] + [r[2] + r[0] for r in rows]
        if fmt in ("openai", "sharegpt"):  # the prompt holds the instruction and, when there is one, the input
            assert all(any(e in g for g in got) for e in expected)
        else:
            assert sorted(got) == sorted(expected)


@settings(SETTINGS, max_examples=100)
@given(rows=ROWS, fmt=st.sampled_from(FORMATS), fail_at=st.integers(min_value=0, max_value=8),
       had_before=st.booleans())
def test_a_failure_part_way_leaves_no_partial_file(rows, fmt, fail_at, had_before):
    real = formats.record
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > fail_at:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, run_id = _store_with(folder, rows)
        out = folder / "out" / f"export.{fmt}"
        out.parent.mkdir()
        if had_before:
            out.write_text("the earlier export\n", encoding="utf-8")
        formats.record = failing
        try:
            try:
                write_export(store, run_id, fmt, out, status="all")
            except OSError as e:
                failed = True
                assert str(out) in str(e) and ".part" not in str(e)
            else:
                failed = False
        finally:
            formats.record = real
            store.close()
        if failed:
            assert fail_at < 2 * len(rows)
            assert os.listdir(out.parent) == ([out.name] if had_before else [])
            if had_before:
                assert out.read_text(encoding="utf-8") == "the earlier export\n"
        else:
            assert fail_at >= 2 * len(rows) and len(_read(out, fmt)) == 2 * len(rows)
            assert os.listdir(out.parent) == [out.name]
