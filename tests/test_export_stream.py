"""Exports stream: records are written one at a time from batches of the store, the files look exactly as
when they were built in memory, and a failed export leaves no half file."""
from __future__ import annotations

import json

import pytest

from evolab.export import formats as export
from evolab.schema import Node, RunConfig, Score, Seed
from evolab.store import Store


@pytest.fixture
def big_store(tmp_path):
    """A run of 2 seeds and 23 children (more than one batch of 10), with scores, answers and a Korean row."""
    store = Store(tmp_path / "s.db")
    run_id = store.create_run(RunConfig(model="m"), [Seed("Explain tides."), Seed("조수를 설명하세요.")], name="r")
    nodes = []
    for i in range(25):
        root = f"seed{i % 2}"
        n = Node(id=f"seed{i}" if i < 2 else f"c{i:02d}", run_id=run_id, parent_id=None if i < 2 else root,
                 root_id=root, round=0 if i < 2 else 1 + i % 3, operation="seed" if i < 2 else "deepen",
                 instruction=f"지시 {i} \"quoted\"\nline" if i % 5 == 0 else f"Instruction {i}",
                 response=None if i % 7 == 3 else f"Answer {i}",
                 status="seed" if i < 2 else ("kept" if i % 4 else "eliminated"),
                 rule=None if i < 2 or i % 4 else "refusal")
        nodes.append(n)
    store.save_nodes(nodes)
    for n in nodes:
        store.record_step(None, [Score(n.id, "quality", float(n.round) + 1.5, "j"),
                                 Score(n.id, "rule:refusal", 1.0, "rules")])
    yield store, run_id
    store.close()


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("select", [{}, {"status": "all"}, {"min_scores": {"quality": 3.0}},
                                    {"status": "all", "rules": ["refusal"]}])
def test_streamed_files_are_what_building_in_memory_gave(big_store, tmp_path, fmt, select):
    store, run_id = big_store
    nodes = export.select_nodes(store, run_id, **select)
    records = export.to_records(store, run_id, nodes, fmt)
    if fmt in ("alpaca", "sharegpt"):
        expected = json.dumps(records, ensure_ascii=False, indent=2) + "\n"  # the old, in-memory layout
    else:
        expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    out = tmp_path / f"out.{fmt}"
    assert export.write_export(store, run_id, fmt, out, **select) == len(nodes)
    assert out.read_text(encoding="utf-8") == expected
    assert export.export_run(store, run_id, fmt, **select) == expected


def test_batches_keep_the_order_and_the_scores(big_store):
    store, run_id = big_store
    streamed = [(n.id, scores) for batch, by_id in store.iter_nodes_with_scores(run_id, batch=10)
                for n in batch for scores in [by_id.get(n.id, {})]]
    assert [i for i, _ in streamed] == [n.id for n in store.nodes(run_id)]
    assert all(s["quality"] == pytest.approx(float(n.round) + 1.5) and "rule:refusal" in s
               for (_, s), n in zip(streamed, store.nodes(run_id)))
    lineage = [json.loads(line) for line in export.export_run(store, run_id, "lineage", status="all").splitlines()]
    assert all("rule:refusal" not in r["scores"] and "quality" in r["scores"] for r in lineage)


def test_an_empty_selection_is_an_empty_array(big_store):
    store, run_id = big_store
    assert export.export_run(store, run_id, "alpaca", min_scores={"quality": 99}) == "[]\n"
    assert export.export_run(store, run_id, "openai", min_scores={"quality": 99}) == ""


def test_a_failed_export_leaves_no_half_file(big_store, tmp_path, monkeypatch):
    store, run_id = big_store
    out = tmp_path / "data.json"
    out.write_text("the previous export\n", encoding="utf-8")
    real = export.record

    def failing(n, fmt, **kw):
        if n.id == "c20":
            raise RuntimeError("disk full")
        return real(n, fmt, **kw)

    monkeypatch.setattr(export, "record", failing)
    with pytest.raises(RuntimeError):
        export.write_export(store, run_id, "alpaca", out, status="all")
    assert out.read_text(encoding="utf-8") == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
