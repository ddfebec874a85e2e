"""Property-based tests (hypothesis) of the seed loaders, issue 22: for any input, in every format (JSONL, JSON, CSV,
plain text, parquet, arrow), `load_seeds` either returns seeds with a non-blank instruction or raises SeedFileError
naming the file; `python -m evolab seeds check FILE` turns that into exit 2 with "error: FILE..." (the line or row
when there is one), never a traceback. The inputs are built from what crashes parsers: whitespace only,
punctuation only, huge words, mixed scripts, NULs, BOMs, bad UTF-8, deep nesting, stray quotes and delimiters.

Examples per property: MAX_EXAMPLES (200), parquet/arrow 100; see the fault matrix (docs/fault-matrix.md).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolab.cli.main import main
from evolab.seeds.files import SeedFileError, load_seeds, record_columns
from evolab.seeds.importing import parse_mapping

MAX_EXAMPLES = 200
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Pieces that break parsers, joined at random with ordinary text.
NASTY = ["", " ", "\t", "\n", "\r\n", "\r", "\x00", "\ufeff", "\u200b", "\u2028", "\x1b", "\x7f", "{", "}", "[", "]",
         '"', "'", ",", ";", ":", "\\", "/", "!?.,;:", "...", "---", "instruction", "prompt", "input", "skill",
         "difficulty", "source", "seeds", "data", "1e999", "-0", "NaN", "null", "true", "한국어 문장", "Ωμέγα",
         "مرحبا", "日本語", "🙂", "x" * 5000, "[" * 200, "{\"a\":" * 100, '"",""', '"a""b"', "\t\t\t"]
TEXT = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=30)), max_size=40).map("".join)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates: bad UTF-8 on purpose


RAW = st.one_of(
    TEXT.map(_encode),
    TEXT.map(lambda t: b"\xef\xbb\xbf" + _encode(t)),  # a UTF-8 BOM
    TEXT.map(lambda t: t.encode("utf-16")),  # UTF-16 with a BOM
    TEXT.map(lambda t: t.encode("utf-16-le")),  # UTF-16 without one: NULs everywhere
    TEXT.map(lambda t: t.encode("cp949", "replace")),
    st.binary(max_size=300),
    st.sampled_from([b"", b"   ", b"\n\n\n", b"\x00" * 10, b"\xff\xfe", b"PK\x03\x04rest", b"!!!", b"???,;;;"]),
)

# Structured documents with odd values in odd places: valid JSON that is not what a seed file should hold.
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.sampled_from(["instruction", "Instruction ", "prompt",
                                                                          "input", "skill", "difficulty", "source",
                                                                          "seeds", "data"]), TEXT),
                                               children, max_size=5)),
    max_leaves=20)
DOCUMENT = st.one_of(
    JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.lists(JSON_VALUE, max_size=6).map(lambda vs: "\n".join(json.dumps(v, ensure_ascii=False) for v in vs)),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),  # deep nesting
    st.lists(st.lists(TEXT, max_size=5), max_size=6).map(
        lambda rows: "\n".join(",".join(json.dumps(c) if i % 2 else c for i, c in enumerate(r)) for r in rows)),
)


def _check(data: bytes, fmt: str, mapping=None) -> None:
    name = f"seeds.{fmt}"
    try:
        seeds = load_seeds(data, name=name, mapping=mapping)
    except SeedFileError as e:
        assert e.path == name and e.problem and str(e).startswith(name)
        assert e.line is None or (isinstance(e.line, int) and e.line >= 1)
        return
    assert seeds and all(s.instruction.strip() for s in seeds)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "txt"])
@SETTINGS
@given(data=RAW)
def test_any_bytes_load_or_raise_seedfileerror(fmt, data):
    _check(data, fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@SETTINGS
@given(text=DOCUMENT)
def test_any_document_loads_or_raises_seedfileerror(fmt, text):
    _check(_encode(text), fmt)


@SETTINGS
@given(text=DOCUMENT, fmt=st.sampled_from(["jsonl", "json", "csv", "txt"]),
       mapping=st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["instruction=question", "input=x,skill=y",
                                                                          "instruction=", "bogus=1", "a"])))
def test_a_mapping_is_a_valueerror_or_loads_or_raises_seedfileerror(text, fmt, mapping):
    try:
        parsed = parse_mapping(mapping)
    except ValueError as e:  # the CLI shows it as exit 2 too
        assert str(e).startswith("--map")
        return
    _check(_encode(text), fmt, parsed or None)
    try:
        record_columns(_encode(text), name=f"s.{fmt}")
    except SeedFileError:
        pass


# -- parquet and arrow ---------------------------------------------------------------------------------------
CELL = st.one_of(st.none(), TEXT, st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(), st.booleans())
COLUMN_NAMES = st.sampled_from(["instruction", "prompt", "input", "context", "skill", "category", "difficulty",
                                "other", "INSTRUCTION", " instruction "])


@st.composite
def tables(draw):
    names = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=4, unique=True))
    n = draw(st.integers(min_value=0, max_value=5))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(["text", "int", "float", "bool", "list", "struct", "binary", "mixed-null"]))
        if kind == "text":
            columns[name] = pa.array(draw(st.lists(st.one_of(st.none(), TEXT), min_size=n, max_size=n)), pa.string())
        elif kind == "int":
            columns[name] = pa.array(draw(st.lists(st.integers(-10**6, 10**6), min_size=n, max_size=n)), pa.int64())
        elif kind == "float":
            columns[name] = pa.array(draw(st.lists(st.floats(), min_size=n, max_size=n)), pa.float64())
        elif kind == "bool":
            columns[name] = pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), pa.bool_())
        elif kind == "list":
            columns[name] = pa.array(draw(st.lists(st.lists(TEXT, max_size=2), min_size=n, max_size=n)))
        elif kind == "struct":
            columns[name] = pa.array([{"a": draw(TEXT)} for _ in range(n)], pa.struct([("a", pa.string())]))
        elif kind == "binary":
            columns[name] = pa.array(draw(st.lists(st.binary(max_size=20), min_size=n, max_size=n)), pa.binary())
        else:
            columns[name] = pa.nulls(n)
    return pa.table(columns)


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


@settings(SETTINGS, max_examples=100)
@given(table=tables(), fmt=st.sampled_from(["parquet", "arrow"]))
def test_any_table_loads_or_raises_seedfileerror(table, fmt):
    _check(_parquet(table) if fmt == "parquet" else _arrow(table), fmt)


@settings(SETTINGS, max_examples=100)
@given(data=st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(lambda b: b"PAR1" + b + b"PAR1"),
                      tables().map(_parquet).map(lambda b: b[: len(b) // 2])),  # a truncated parquet file
       fmt=st.sampled_from(["parquet", "arrow"]))
def test_broken_parquet_and_arrow_raise_seedfileerror(data, fmt):
    _check(data, fmt)


# -- the CLI: exit 0 or 2 naming the file, never a traceback ---------------------------------------------------
@settings(SETTINGS, max_examples=100)
@given(data=st.one_of(RAW, DOCUMENT.map(_encode)), fmt=st.sampled_from(["jsonl", "json", "csv", "txt"]))
def test_seeds_check_is_exit_0_or_2_naming_the_file(capsys, data, fmt):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"seeds.{fmt}"
        path.write_bytes(data)
        status = main(["seeds", "check", str(path)])
        out, err = capsys.readouterr()
        assert status in (0, 2), err
        if status == 2:
            assert err.startswith(f"error: {path}") and "Traceback" not in err
        else:
            assert out.startswith(f"{path}: OK")
        assert sorted(os.listdir(folder)) == [path.name]  # nothing written beside it
