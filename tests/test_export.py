"""Exports: Alpaca JSON, ShareGPT JSON, OpenAI chat JSONL and lineage JSONL parse and carry their fields,
from Python and from the CLI; `kept` vs `all`; the dataset card."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import openai_backend_for

from evolab.engine import pipeline
from evolab.export import formats as export
from evolab.export.card import dataset_card
from evolab.llm import scripted_reply
from evolab.llm.fake import given_prompt
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [
    Seed("Summarise the text in one sentence.", input="The meeting moved to Tuesday because the room was booked.",
         skill="summarisation", difficulty=2),
    Seed("ECHO Explain why the sky is blue.", skill="science", difficulty=3),
    Seed("피보나치 수열을 설명하세요.", skill="math", difficulty=4),
]
LINEAGE_FIELDS = {"id", "parent_id", "root_id", "round", "operation", "instruction", "input", "response", "status",
                  "rule", "scores", "skill", "seed_difficulty", "language", "model"}


def handler(messages, purpose):
    if purpose == "evolve" and "ECHO" in given_prompt(messages):
        return "#Rewritten Prompt#:\n" + given_prompt(messages)  # eliminated: no new information
    return scripted_reply(messages, purpose)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished run (2 rounds, one lineage's children all eliminated), shared by the tests here."""
    store = Store(tmp_path_factory.mktemp("export") / "evolab.db")
    with StubServer(handler=handler) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=2, concurrency=4)
        run_id = pipeline.create_run(store, SEEDS, config, name="export-test")
        assert pipeline.run_sync(store, run_id, backend=openai_backend_for(stub, api_key_env=None)) == "finished"
    yield store, run_id
    store.close()


def load(text: str, fmt: str) -> list[dict]:
    if fmt in ("openai", "lineage"):
        return [json.loads(line) for line in text.splitlines()]
    data = json.loads(text)
    assert isinstance(data, list)
    return data


def test_kept_export_is_the_seeds_and_kept_children_with_answers(finished_run):
    store, run_id = finished_run
    nodes = store.nodes(run_id)
    kept = [n for n in nodes if n.status in ("kept", "seed")]
    eliminated = [n for n in nodes if n.status == "eliminated"]
    assert eliminated and all(n.rule == "no_new_information" for n in eliminated)
    assert [n.id for n in export.select_nodes(store, run_id)] == [n.id for n in kept]
    assert len(export.select_nodes(store, run_id, status="all")) == len(nodes)
    assert all(n.round for n in export.select_nodes(store, run_id, include_seeds=False))
    with pytest.raises(ValueError, match="status"):
        export.select_nodes(store, run_id, status="bogus")


def test_alpaca(finished_run, tmp_path):
    store, run_id = finished_run
    out = tmp_path / "a.json"
    text = export.export_run(store, run_id, "alpaca", out)
    records = load(out.read_text(encoding="utf-8"), "alpaca")
    assert text == out.read_text(encoding="utf-8")
    kept = export.select_nodes(store, run_id)
    assert len(records) == len(kept) > 0
    for rec, n in zip(records, kept):
        assert set(rec) == {"instruction", "input", "output"}
        assert (rec["instruction"], rec["input"], rec["output"]) == (n.instruction, n.input, n.response)
    assert any(r["input"] == SEEDS[0].input for r in records)
    assert "피보나치" in out.read_text(encoding="utf-8")  # UTF-8, not \u escapes


def test_sharegpt(finished_run):
    store, run_id = finished_run
    records = load(export.export_run(store, run_id, "sharegpt"), "sharegpt")
    kept = export.select_nodes(store, run_id)
    assert len(records) == len(kept)
    for rec, n in zip(records, kept):
        conv = rec["conversations"]
        assert [m["from"] for m in conv] == ["human", "gpt"]
        assert conv[0]["value"].startswith(n.instruction) and conv[1]["value"] == n.response
        if n.input:
            assert n.input in conv[0]["value"]


def test_openai_chat_jsonl(finished_run):
    store, run_id = finished_run
    text = export.export_run(store, run_id, "openai")
    records = load(text, "openai")
    assert text.endswith("\n") and len(text.splitlines()) == len(records)
    for rec in records:
        assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in rec["messages"])


def test_lineage_keeps_every_field_of_every_node(finished_run):
    store, run_id = finished_run
    records = load(export.export_run(store, run_id, "lineage", status="all"), "lineage")
    nodes = {n.id: n for n in store.nodes(run_id)}
    assert {r["id"] for r in records} == set(nodes)
    for rec in records:
        assert LINEAGE_FIELDS <= set(rec)
        n = nodes[rec["id"]]
        for k in LINEAGE_FIELDS - {"scores", "model"}:
            assert rec[k] == getattr(n, k), k
        assert rec["model"] == "gpt-4o-mini"
        assert isinstance(rec["scores"], dict)
        assert not any(k.startswith("rule:") for k in rec["scores"])
        if n.status in ("kept", "seed"):
            assert 1 <= rec["scores"]["difficulty"] <= 10 and 0 <= rec["scores"]["quality"] <= 5
            assert "cx_tokens" in rec["scores"]
        if rec["parent_id"]:
            assert rec["parent_id"] in nodes and rec["root_id"] == nodes[rec["parent_id"]].root_id
    eliminated = [r for r in records if r["status"] == "eliminated"]
    assert eliminated and all(r["rule"] == "no_new_information" for r in eliminated)
    assert {r["language"] for r in records} == {"en", "ko"}
    assert {(r["skill"], r["seed_difficulty"]) for r in records if r["round"] == 0} == {
        ("summarisation", 2.0), ("science", 3.0), ("math", 4.0)}


def test_filters_rules_and_min_scores(finished_run):
    store, run_id = finished_run
    only = export.select_nodes(store, run_id, status="all", rules=["no_new_information"])
    assert {n.status for n in only} >= {"eliminated"} and all(n.rule in (None, "no_new_information") for n in only)
    scores = export.node_scores(store, run_id)
    high = export.select_nodes(store, run_id, min_scores={"quality": 4.5})
    assert high and all(scores[n.id]["quality"] >= 4.5 for n in high)
    assert len(high) < len(export.select_nodes(store, run_id))


def test_unknown_format_is_refused(finished_run):
    store, run_id = finished_run
    with pytest.raises(ValueError, match="yaml"):
        export.export_run(store, run_id, "yaml")


def test_dataset_card(finished_run):
    store, run_id = finished_run
    card = str(dataset_card(store, run_id))
    assert "export-test" in card and "gpt-4o-mini" in card and "no_new_information" in card
    assert "en/" in card and "ko/" in card  # templates with versions


# -- from the CLI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("status", ["kept", "all"])
def test_cli_export(finished_run, tmp_path, fmt, status):
    store, run_id = finished_run
    out = tmp_path / f"out.{fmt}"
    env = {**os.environ, "EVOLAB_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "evolab", "export", "--db", store.path, "--run", run_id,
                        "--format", fmt, "--out", str(out), "--status", status],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    records = load(out.read_text(encoding="utf-8"), fmt)
    expected = export.select_nodes(store, run_id, status=status)
    assert len(records) == len(expected) and f"wrote {len(expected)} records" in r.stdout
    if fmt == "lineage":
        assert all(LINEAGE_FIELDS <= set(rec) for rec in records)
        assert ({rec["status"] for rec in records} >= {"eliminated"}) == (status == "all")
    elif fmt == "alpaca":
        assert all(set(rec) == {"instruction", "input", "output"} for rec in records)
    elif fmt == "sharegpt":
        assert all(rec["conversations"][0]["from"] == "human" for rec in records)
    else:
        assert all(rec["messages"][0]["role"] == "user" for rec in records)
