"""Issue 22, finding 3: seed files are read only when they are regular files, with the size cap enforced while
reading (a device such as /dev/zero, or a FIFO, is refused at once, never read until memory runs out or waited on);
a save_to_disk folder's state.json (or a symlinked shard) cannot make the reader open a file outside the folder;
and the Seeds page's "path on this machine" box reads only under the folders the server's owner listed in
EVOLAB_SEED_DIRS (none by default: the box says uploads work and how to allow folders)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from evolab.app import support
from evolab.cli.main import main
from evolab.seeds import fields
from evolab.seeds.files import SeedFileError, load_seeds, table_columns
from evolab.seeds.importing import read_dataset

DEV_ZERO = "/dev/zero"
needs_dev_zero = pytest.mark.skipif(not Path(DEV_ZERO).exists(), reason="no /dev/zero here")


def _arrow(path: Path, instructions: list[str]) -> None:
    t = pa.table({"instruction": instructions})
    with pa.ipc.new_stream(str(path), t.schema) as w:
        w.write_table(t)


def _dataset_folder(folder: Path, shards: dict[str, list[str]], state_files: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in shards.items():
        _arrow(folder / name, rows)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": f} for f in state_files]}))
    return folder


# -- devices, FIFOs, the cap ------------------------------------------------------------------------------
@needs_dev_zero
@pytest.mark.parametrize("name", [None, "seeds.jsonl", "seeds.csv", "seeds.parquet", "seeds.arrow"])
def test_dev_zero_is_refused_not_read(name):
    with pytest.raises(SeedFileError) as e:
        load_seeds(DEV_ZERO, name=name)
    assert e.value.path == (name or DEV_ZERO) and "character device" in e.value.problem


@needs_dev_zero
def test_seeds_check_dev_zero_is_exit_2_naming_it(capsys):
    assert main(["seeds", "check", DEV_ZERO]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {DEV_ZERO}: is a character device") and "regular file" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, capsys):
    fifo = tmp_path / "seeds.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(SeedFileError, match="named pipe"):
        load_seeds(fifo)
    with pytest.raises(SeedFileError, match="named pipe"):
        table_columns(str(fifo))
    assert main(["seeds", "check", str(fifo)]) == 2
    assert "named pipe (FIFO), not a regular file" in capsys.readouterr().err


def test_the_cap_holds_for_a_regular_file_too(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_text("Explain the sea.\n" * 100, encoding="utf-8")
    assert len(fields.read_file(path, limit=10_000)) == path.stat().st_size
    with pytest.raises(SeedFileError, match="over the"):
        fields.read_file(path, limit=1000)


def test_a_folder_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(SeedFileError, match="no such file"):
        load_seeds(tmp_path / "nothing.jsonl")
    with pytest.raises(SeedFileError, match="is a folder"):
        fields.read_file(tmp_path)


# -- save_to_disk folders stay inside -------------------------------------------------------------------
def test_state_json_naming_a_file_outside_the_folder_is_refused(tmp_path):
    _arrow(tmp_path / "secret.arrow", ["a credential that must not show up as a seed"])
    folder = _dataset_folder(tmp_path / "ds", {"data.arrow": ["Explain NPV."]}, ["../secret.arrow"])
    with pytest.raises(SeedFileError) as e:
        read_dataset(folder)
    assert "outside its folder" in e.value.problem and "../secret.arrow" in e.value.problem
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": str(tmp_path / "secret.arrow")}]}))
    with pytest.raises(SeedFileError, match="outside its folder"):
        load_seeds(folder)


def test_a_symlinked_shard_pointing_outside_is_refused(tmp_path):
    _arrow(tmp_path / "secret.arrow", ["secret row"])
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "data.arrow").symlink_to(tmp_path / "secret.arrow")  # no state.json: the shards are globbed
    with pytest.raises(SeedFileError, match="outside its folder"):
        load_seeds(folder)


def test_a_device_named_by_state_json_is_refused(tmp_path):
    folder = _dataset_folder(tmp_path / "ds", {"data.arrow": ["Explain NPV."]}, ["data.arrow", "zero.arrow"])
    if Path(DEV_ZERO).exists():
        (folder / "zero.arrow").symlink_to(DEV_ZERO)  # resolves outside: refused before anything is opened
        with pytest.raises(SeedFileError, match="outside its folder"):
            load_seeds(folder)


@pytest.mark.parametrize("state", ["{", '{"_data_files": 3}', '{"_data_files": [{"filename": 3}]}', "[1]",
                                   '{"_data_files": [{"name": "x"}]}', "\ufeff\x00"])
def test_a_bad_state_json_is_named(tmp_path, state):
    folder = _dataset_folder(tmp_path / "ds", {"data.arrow": ["Explain NPV."]}, ["data.arrow"])
    (folder / "state.json").write_text(state)
    with pytest.raises(SeedFileError) as e:
        load_seeds(folder)
    assert e.value.path.startswith(str(folder)) and ("state.json" in str(e.value))


def test_a_good_folder_still_loads(tmp_path):
    folder = _dataset_folder(tmp_path / "ds", {"a.arrow": ["Explain NPV."], "b.arrow": ["Define IRR."]},
                             ["a.arrow", "b.arrow"])
    assert [s.instruction for s in load_seeds(folder)] == ["Explain NPV.", "Define IRR."]


# -- the app's path box ------------------------------------------------------------------------------------
def test_the_path_box_is_off_by_default_and_says_how_to_allow_folders(monkeypatch, tmp_path):
    monkeypatch.delenv(support.SEED_DIRS_ENV, raising=False)
    (tmp_path / "creds.json").write_text(json.dumps({"instruction": "aws_secret_access_key=..."}))
    assert support.seed_dirs() == []
    note = support.seed_dirs_note()
    assert "upload" in note and support.SEED_DIRS_ENV in note
    with pytest.raises(SeedFileError) as e:
        support.seed_path(str(tmp_path / "creds.json"))
    assert support.SEED_DIRS_ENV in e.value.problem


def test_the_path_box_reads_only_inside_the_allowed_folders(monkeypatch, tmp_path):
    allowed, other = tmp_path / "seeds", tmp_path / "private"
    allowed.mkdir()
    other.mkdir()
    (allowed / "a.jsonl").write_text('{"instruction": "Explain NPV."}\n')
    (other / "creds.json").write_text('{"instruction": "secret"}')
    (allowed / "link.json").symlink_to(other / "creds.json")
    monkeypatch.setenv(support.SEED_DIRS_ENV, f"{allowed}{os.pathsep} ")
    assert support.seed_dirs() == [allowed.resolve()]
    assert support.seed_path(str(allowed / "a.jsonl")) == (allowed / "a.jsonl").resolve()
    assert support.seed_path("a.jsonl") == (allowed / "a.jsonl").resolve()  # relative: in the first folder
    for escape in [str(other / "creds.json"), str(allowed / ".." / "private" / "creds.json"),
                   "../private/creds.json", str(allowed / "link.json"), "/etc/passwd", "~"]:
        with pytest.raises(SeedFileError, match="outside the folders"):
            support.seed_path(escape)


def test_the_seeds_page_path_box(monkeypatch, tmp_path):
    """AppTest: with no folder allowed the page has no path box, only the note; with one, a path outside it is
    refused with the reason and a path inside it is read."""
    from streamlit.testing.v1 import AppTest  # noqa: F401 - the page test helpers below import it too
    from test_app_seedsets import seeds_page  # the Seeds page under AppTest, on the stub's settings

    from evolab.testing.stub_server import StubServer

    (tmp_path / "secret.csv").write_text("question\nsecret\n")
    allowed = tmp_path / "ok"
    allowed.mkdir()
    (allowed / "qa.csv").write_text("question,topic\nWhat is duration?,rates\n")
    monkeypatch.delenv(support.SEED_DIRS_ENV, raising=False)
    with StubServer() as stub:
        at = seeds_page(str(tmp_path / "p.db"), stub)
        assert not [t for t in at.text_input if t.key == "seed_import_path"]
        assert any(support.SEED_DIRS_ENV in c.value and "upload" in c.value for c in at.caption)
        monkeypatch.setenv(support.SEED_DIRS_ENV, str(allowed))
        at = seeds_page(str(tmp_path / "p.db"), stub)
        at.text_input(key="seed_import_path").set_value(str(tmp_path / "secret.csv")).run()
        assert any("outside the folders" in e.value for e in at.error), [e.value for e in at.error]
        assert not [s for s in at.selectbox if s.key == "seed_import_map_instruction"]
        at.text_input(key="seed_import_path").set_value(str(allowed / "qa.csv")).run()
        assert at.selectbox(key="seed_import_map_instruction").options == ["question", "topic"]
