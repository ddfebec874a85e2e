"""Issue 22, findings 6 and 10: every argument is checked before any paid call, pass or write.

- `--until-round 0` used to run (and pay for) every round (`0 or rounds`), and negative values were accepted: now
  exit 2 from the CLI (run, resume, batch export/import) and ValueError from the engine, before any call.
- `seeds grow --out /no/such/dir/x` failed after its calls, `batch export --out` after its pass; `export --out
  /no/dir/x` named a hidden temp file; `resume --db README.md` printed a DatabaseError. Now each is exit 2 naming
  the path the user gave, before anything is sent or written; the same for every command with --db or --out.

The commands run in this process (`evolab.cli.main.main`) against the stub server; the stub counts what was sent.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import STUB_KEY_ENV

from evolab.cli.main import main
from evolab.engine import pipeline
from evolab.engine.runconfig import build_run_config
from evolab.export.formats import write_export
from evolab.llm import FakeBackend
from evolab.schema import Seed
from evolab.store import Store

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ["Explain why the sky is blue.", "Write a short poem about the sea.", "Give three tips for learning.",
         "Describe how a bicycle gear system works."]


@pytest.fixture
def seeds_file(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"instruction": s}) + "\n" for s in SEEDS), encoding="utf-8")
    return path


def endpoint(stub):
    return ["--base-url", stub.base_url, "--model", "gpt-4o-mini", "--api-key-env", STUB_KEY_ENV]


def run_cli(capsys, *args) -> tuple[int, str]:
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def stored_run(tmp_path, stub, *, rounds=3, until=None) -> tuple[Path, str]:
    """A store with one run against the stub (run to `until` when given)."""
    db = tmp_path / "runs.db"
    store = Store(db)
    config = build_run_config(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=rounds,
                              fanout=1, ops=None)
    run_id = pipeline.create_run(store, [Seed(s) for s in SEEDS[:2]], config)
    if until:
        pipeline.run_sync(store, run_id, until_round=until)
    store.close()
    stub.reset()
    return db, run_id


# -- finding 6: --until-round ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, 4])
def test_run_until_round_out_of_range_is_exit_2_before_any_call(capsys, stub, tmp_path, seeds_file, value):
    db = tmp_path / "r.db"
    status, err = run_cli(capsys, "run", seeds_file, "--db", db, "--rounds", 3, "--until-round", value,
                          *endpoint(stub), "--no-warm")
    assert status == 2, err
    assert f"--until-round {value}" in err and ("at least 1" in err or "past the run's last round (3)" in err)
    assert stub.count() == 0
    assert not db.exists() or Store(db).list_runs() == []  # no run created either


@pytest.mark.parametrize("value", [0, -2])
def test_resume_until_round_below_1_is_exit_2_before_any_call(capsys, stub, tmp_path, value):
    db, run_id = stored_run(tmp_path, stub)
    status, err = run_cli(capsys, "resume", "--db", db, "--until-round", value, "--no-warm")
    assert (status, stub.count()) == (2, 0), err
    assert "at least 1" in err
    assert Store(db).get_run(run_id)["status"] == "created"


def test_resume_until_round_before_a_round_the_run_has_is_exit_2(capsys, stub, tmp_path):
    db, run_id = stored_run(tmp_path, stub, until=2)
    status, err = run_cli(capsys, "resume", "--db", db, "--until-round", 1, "--no-warm")
    assert (status, stub.count()) == (2, 0), err
    assert f"run {run_id} already has round 2" in err
    assert Store(db).get_run(run_id)["status"] == "paused"
    status, err = run_cli(capsys, "resume", "--db", db, "--until-round", 3, "--no-warm")  # a sensible one runs
    assert status == 0, err
    assert stub.count() > 0 and Store(db).get_run(run_id)["status"] == "finished"


def test_resume_of_a_finished_run_to_an_earlier_round_is_refused(capsys, stub, tmp_path):
    """It used to turn the finished run back into a paused one."""
    db, run_id = stored_run(tmp_path, stub, rounds=3, until=3)
    assert Store(db).get_run(run_id)["status"] == "finished"
    status, err = run_cli(capsys, "resume", "--db", db, "--until-round", 2, "--no-warm")
    assert (status, stub.count()) == (2, 0), err
    assert f"Run {run_id} is finished" in err
    assert Store(db).get_run(run_id)["status"] == "finished"
    status, err = run_cli(capsys, "resume", "--db", db, "--until-round", 3, "--no-warm")
    assert (status, stub.count()) == (0, 0), err  # nothing to do, nothing paid, still finished
    assert Store(db).get_run(run_id)["status"] == "finished"


@pytest.mark.parametrize("command", ["export", "import"])
def test_batch_until_round_0_is_exit_2_before_the_pass(capsys, stub, tmp_path, command):
    db, run_id = stored_run(tmp_path, stub)
    extra = ["--out", tmp_path / "req.jsonl"] if command == "export" else ["--results", tmp_path / "res.jsonl"]
    (tmp_path / "res.jsonl").write_text("")
    status, err = run_cli(capsys, "batch", command, "--db", db, *extra, "--until-round", 0)
    assert (status, stub.count()) == (2, 0), err
    assert "--until-round 0" in err and not (tmp_path / "req.jsonl").exists()
    assert Store(db).batches(run_id) == []


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_the_engine_refuses_until_round_below_1_before_any_call(store, value):
    fake = FakeBackend()
    config = build_run_config(model="fake", base_url=None, api_key_env=None, rounds=2, fanout=1, ops=None)
    run_id = pipeline.create_run(store, [Seed(SEEDS[0])], config)
    with pytest.raises(ValueError, match="until_round must be a round number of at least 1"):
        pipeline.run_sync(store, run_id, backend=fake, until_round=value)
    assert fake.requests == []
    assert store.get_run(run_id)["status"] == "created"


# -- finding 10: output paths ------------------------------------------------------------------------------
def test_seeds_grow_into_a_missing_folder_is_exit_2_before_any_call(capsys, stub, tmp_path, seeds_file):
    out = tmp_path / "no" / "such" / "dir" / "grown.jsonl"
    status, err = run_cli(capsys, "seeds", "grow", seeds_file, "--n", 2, "--out", out, "--db", tmp_path / "g.db",
                          *endpoint(stub))
    assert (status, stub.count()) == (2, 0), err
    assert err.strip() == f"error: --out {out}: the folder {out.parent} does not exist; create it first."
    assert not (tmp_path / "g.db").exists()


@pytest.mark.parametrize("make_out", [lambda t: t / "nodir" / "x.jsonl", lambda t: t])
def test_export_to_a_bad_path_names_that_path(capsys, stub, tmp_path, make_out):
    db, run_id = stored_run(tmp_path, stub, rounds=1, until=1)
    out = make_out(tmp_path)
    status, err = run_cli(capsys, "export", "--db", db, "--format", "alpaca", "--out", out)
    assert status == 2, err
    assert f"--out {out}" in err and ".part" not in err


def test_write_export_names_the_given_path_not_its_temp_file(stub, tmp_path):
    db, run_id = stored_run(tmp_path, stub, rounds=1, until=1)
    out = tmp_path / "nodir" / "x.jsonl"
    with pytest.raises(OSError) as e:
        write_export(Store(db), run_id, "openai", out)
    assert str(out) in str(e.value) and ".part" not in str(e.value)
    assert not out.parent.exists()


def test_batch_export_to_a_missing_folder_is_exit_2_before_the_pass(capsys, stub, tmp_path):
    db, run_id = stored_run(tmp_path, stub)
    out = tmp_path / "nodir" / "req.jsonl"
    status, err = run_cli(capsys, "batch", "export", "--db", db, "--out", out)
    assert (status, stub.count()) == (2, 0), err
    assert f"--out {out}: the folder" in err
    store = Store(db)
    assert store.batches(run_id) == [] and store.get_run(run_id)["status"] == "created"


def test_run_batch_export_to_a_missing_folder_creates_no_run(capsys, stub, tmp_path, seeds_file):
    db = tmp_path / "b.db"
    status, err = run_cli(capsys, "run", seeds_file, "--db", db, *endpoint(stub), "--batch-export",
                          tmp_path / "nodir" / "r.jsonl")
    assert (status, stub.count()) == (2, 0), err
    assert "--batch-export" in err and not db.exists()


def test_report_to_a_missing_folder_is_exit_2(capsys, stub, tmp_path):
    db, run_id = stored_run(tmp_path, stub, rounds=1, until=1)
    out = tmp_path / "nodir" / "r.html"
    status, err = run_cli(capsys, "report", "--db", db, "--out", out)
    assert status == 2 and f"--out {out}: the folder" in err


# -- finding 10: --db that is not an evolab store ------------------------------------------------------------
DB_COMMANDS = [
    ["resume"], ["runs"], ["export", "--format", "alpaca", "--out", "{tmp}/x.jsonl"], ["report", "--out",
                                                                                        "{tmp}/r.html"],
    ["check"], ["judge", "--rounds", "0,1"], ["agreement"], ["tune", "--list"], ["batch", "status"],
    ["batch", "export", "--out", "{tmp}/q.jsonl"], ["batch", "cancel"],
    ["seeds", "grow", "{seeds}", "--n", "1", "--out", "{tmp}/g.jsonl"],
    ["embed", "show"],
]


@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("kind", ["text", "other-sqlite", "folder"])
def test_a_db_that_is_not_an_evolab_store_is_exit_2_naming_it(capsys, stub, tmp_path, seeds_file, command, kind):
    if kind == "text":
        db = tmp_path / "README.md"
        db.write_text("# Not a database\n")
    elif kind == "other-sqlite":
        db = tmp_path / "other.sqlite"
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE contacts (name TEXT)")
        before = db.read_bytes()
    else:
        db = tmp_path / "folder"
        db.mkdir()
    args = [a.format(tmp=tmp_path, seeds=seeds_file) for a in command]
    status, err = run_cli(capsys, *args, "--db", db, *(endpoint(stub) if command[0] == "seeds" else []))
    assert status == 2, err
    assert f"--db {db}" in err and "Error:" not in err and "Traceback" not in err
    assert stub.count() == 0
    if kind == "other-sqlite":
        assert db.read_bytes() == before  # another program's database is never migrated into a store


def test_embed_calibrate_checks_the_db_before_embedding(capsys, tmp_path, monkeypatch):
    from evolab.cli import embed as embed_cli

    db = tmp_path / "README.md"
    db.write_text("not a store")
    monkeypatch.setattr(embed_cli, "_embedder", lambda args: pytest.fail("embedded before checking --db"))
    status, err = run_cli(capsys, "embed", "calibrate", "--db", db)
    assert status == 2 and f"--db {db} is not an evolab store" in err


def test_a_new_store_in_a_missing_folder_is_exit_2(capsys, stub, tmp_path, seeds_file):
    db = tmp_path / "nodir" / "new.db"
    status, err = run_cli(capsys, "run", seeds_file, "--db", db, *endpoint(stub))
    assert (status, stub.count()) == (2, 0) and f"--db {db}: the folder" in err
    assert not db.parent.exists()


def test_an_empty_file_is_a_new_store_and_a_real_store_opens(capsys, stub, tmp_path, seeds_file):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    status, err = run_cli(capsys, "run", seeds_file, "--db", db, "--rounds", 1, *endpoint(stub), "--no-warm")
    assert status == 0, err
    status, err = run_cli(capsys, "runs", "--db", db)
    assert status == 0, err
