"""Seed set versions: every changed save is a version, an unchanged save is not; the diff between any two versions
(added, removed, changed rows with the changed fields), English and Korean; a run records the version it used
(pipeline, CLI --seed-set); seed sets saved before versions were kept become version 1."""
from __future__ import annotations

import sqlite3

import pytest
from conftest import STUB_KEY_ENV

from evolab.app import support as app_support
from evolab.cli import main as cli
from evolab.engine import pipeline
from evolab.schema import RunConfig, Seed
from evolab.seeds.files import seeds_from_records
from evolab.seeds.versions import diff_seed_sets, load_saved_set
from evolab.store import MIGRATIONS, Store
from evolab.testing.stub_server import StubServer


def seeds(*rows) -> list[Seed]:
    return seeds_from_records([dict(zip(("instruction", "input", "skill", "difficulty"), r)) for r in rows])


V1 = seeds(("Explain NPV to a beginner.", "", "finance", 3),
           ("금리가 오르면 채권 가격은 왜 떨어지나요?", "", "금융", 4),
           ("Write a haiku about the stock market.", "", "writing", 2))
V2 = seeds(("Explain NPV to a beginner with one worked example.", "", "finance", 3),  # instruction edited
           ("금리가 오르면 채권 가격은 왜 떨어지나요?", "", "금융", 6),  # difficulty changed
           ("Write a haiku about the stock market.", "", "writing", 2),
           ("ETF와 뮤추얼 펀드의 차이를 설명하세요.", "", "금융", 3))  # added
V3 = seeds(("ETF와 뮤추얼 펀드의 차이를 설명하세요.", "두 상품의 수수료 비교", "금융", 3),  # input added, moved up
           ("Explain NPV to a beginner with one worked example.", "", "finance", 3))  # haiku and bonds removed


@pytest.fixture
def saved(store):
    assert store.save_seed_set("finance-ko", V1) == 1
    assert store.save_seed_set("finance-ko", V1) == 1  # unchanged: no new version
    assert store.save_seed_set("finance-ko", V2, note="harder bond question") == 2
    assert store.save_seed_set("finance-ko", V3) == 3
    return store


def test_three_saves_are_three_versions_newest_first(saved):
    versions = saved.seed_set_versions("finance-ko")
    assert [(v["version"], v["seeds"], v["note"]) for v in versions] == [(3, 2, None), (2, 4, "harder bond question"),
                                                                        (1, 3, None)]
    assert len({v["content_hash"] for v in versions}) == 3
    assert saved.load_seed_set("finance-ko") == V3  # the set itself is the latest version
    assert [saved.load_seed_set_version("finance-ko", v) for v in (1, 2, 3)] == [V1, V2, V3]
    assert saved.save_seed_set("finance-ko", V1) == 4  # going back to old content is a new save, a new version
    assert saved.save_seed_set("other", V1) == 1  # versions count per set
    with pytest.raises(KeyError, match="no version 7"):
        load_saved_set(saved, "finance-ko", 7)
    with pytest.raises(KeyError, match="saved sets: other, finance-ko"):
        load_saved_set(saved, "nope")


def test_diff_between_any_two_versions(saved):
    v = {n: saved.load_seed_set_version("finance-ko", n) for n in (1, 2, 3)}
    d12 = diff_seed_sets(v[1], v[2])
    assert d12.summary == "1 added, 0 removed, 2 changed, 1 unchanged"
    changed = {(c.old_row, c.new_row): c.fields for c in d12.changes if c.change == "changed"}
    assert changed == {(1, 1): ("instruction",), (2, 2): ("difficulty",)}
    assert [(c.change, c.new_row, c.new["instruction"]) for c in d12.changes if c.change == "added"] == [
        ("added", 4, "ETF와 뮤추얼 펀드의 차이를 설명하세요.")]
    row = next(r for r in d12.rows() if r["fields"] == "difficulty")
    assert row["difficulty"] == "4 → 6" and row["instruction"] == "금리가 오르면 채권 가격은 왜 떨어지나요?"

    d23 = diff_seed_sets(v[2], v[3])
    assert d23.summary == "0 added, 2 removed, 1 changed, 1 unchanged"
    assert [(c.old_row, c.new_row, c.fields) for c in d23.changes if c.change == "changed"] == [(4, 1, ("input",))]
    assert sorted(c.old_row for c in d23.changes if c.change == "removed") == [2, 3]

    d13 = diff_seed_sets(v[1], v[3])  # not neighbours
    assert d13.summary == "1 added, 2 removed, 1 changed, 0 unchanged"
    d31 = diff_seed_sets(v[3], v[1])  # and backwards
    assert d31.summary == "2 added, 1 removed, 1 changed, 0 unchanged"
    assert diff_seed_sets(v[2], v[2]).summary == "0 added, 0 removed, 0 changed, 4 unchanged"


def test_a_reordered_or_duplicated_row_is_matched_not_reported_as_changed():
    a = seeds(("Explain NPV.", "", None, None), ("Explain IRR.", "", None, None))
    b = list(reversed(a)) + [a[0]]
    d = diff_seed_sets(a, b)
    assert d.unchanged == 2 and [(c.change, c.new_row) for c in d.changes] == [("added", 3)]


def test_a_run_records_the_version_it_used(saved):
    config = RunConfig(model="fake", rounds=1)
    latest = saved.load_seed_set("finance-ko")
    run = pipeline.create_run(saved, latest, config, seed_set="finance-ko")
    assert saved.get_run(run)["seed_set_version"] == 3
    old = saved.load_seed_set_version("finance-ko", 1)
    run = pipeline.create_run(saved, old, config, seed_set="finance-ko")
    assert saved.get_run(run)["seed_set_version"] == 1
    edited = latest[:1]  # loaded from the set, then edited: not a saved version
    run = pipeline.create_run(saved, edited, config, seed_set="finance-ko")
    assert saved.get_run(run)["seed_set_version"] is None
    run = pipeline.create_run(saved, latest, config)  # from a file
    assert saved.get_run(run)["seed_set_version"] is None
    used = {v["version"]: v["runs"] for v in saved.seed_set_versions("finance-ko")}
    assert len(used[3]) == 1 and len(used[1]) == 1 and used[2] == []
    shown = app_support.runs_frame(saved)["seed set"]  # what the Runs page lists, newest first
    assert list(shown) == ["", "finance-ko (edited)", "finance-ko v1", "finance-ko v3"]


def test_cli_run_from_a_saved_set_records_its_version(tmp_path, capsys):
    db = str(tmp_path / "cli.db")
    store = Store(db)
    store.save_seed_set("fin", V1)
    store.save_seed_set("fin", V2)
    store.close()
    with StubServer() as stub:
        args = ["run", "--seed-set", "fin", "--db", db, "--base-url", stub.base_url, "--model", "gpt-4o-mini",
                "--api-key-env", STUB_KEY_ENV, "--rounds", "1", "--no-equal-judge"]
        assert cli.main(args + ["--seed-set-version", "1"]) == 0
        assert cli.main(args) == 0
    store = Store(db)
    runs = sorted(store.list_runs(), key=lambda r: r["created_at"])
    assert [(r["seed_set"], r["seed_set_version"], len(r["seeds"])) for r in runs] == [("fin", 1, 3), ("fin", 2, 4)]
    capsys.readouterr()
    assert cli.main(["runs", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "seeds: seed set fin v1" in out and "seeds: seed set fin v2" in out
    assert cli.main(["run", "--seed-set", "nope", "--db", db]) == 2
    assert "No seed set named 'nope'" in capsys.readouterr().err
    assert cli.main(["run", "--db", db]) == 2
    assert "Give a seed file or --seed-set NAME" in capsys.readouterr().err


def test_seed_sets_saved_before_versions_become_version_1(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for statement in (MIGRATIONS[0] + MIGRATIONS[1]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute("INSERT INTO seed_sets VALUES ('legacy', ?, 1.0, 2.0)",
                 ('[{"instruction": "채권이란?", "input": "", "skill": null, "difficulty": null, "language": "ko"}]',))
    conn.commit()
    conn.close()
    store = Store(path)
    [v1] = store.seed_set_versions("legacy")
    assert v1["version"] == 1 and v1["seeds"] == 1 and "before versions" in v1["note"]
    assert store.save_seed_set("legacy", store.load_seed_set("legacy")) == 1  # same content: still version 1
    run = pipeline.create_run(store, store.load_seed_set("legacy"), RunConfig(model="fake", rounds=1),
                              seed_set="legacy")
    assert store.get_run(run)["seed_set_version"] == 1
    assert store.save_seed_set("legacy", [Seed("채권이란 무엇인가요?", language="ko")]) == 2
