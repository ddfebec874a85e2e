"""The Seeds page's Lint, History and Import panels (AppTest): lint findings listed with their fixes, and a merge,
a drop and a tag changing the table; saving versions, the history and a diff between two chosen versions, loading
an old version; importing a CSV with other column names and a save_to_disk-style folder through the mapping UI."""
from __future__ import annotations

import json

import pyarrow as pa
from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, button, clean, read_markdown, stub_module, stub_settings, texts  # noqa: F401,E501

from evolab.schema import Seed
from evolab.seeds.files import seeds_to_records
from evolab.store import Store

LINTED = [Seed("Explain what a bond is.", skill="finance"),  # no difficulty
          Seed("explain what a  bond is.", difficulty=3),  # a duplicate of row 1, with the difficulty it lacks
          Seed("채권 가격 결정의 기초", skill="금융", difficulty=2),  # a title, not a task
          Seed("금리가 오르면 채권 가격은 왜 떨어지나요?")]  # no tags


def seeds_page(db: str, stub, seeds: list[Seed] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["settings"] = stub_settings(db, stub)
    if seeds is not None:
        at.session_state["seed_records"] = seeds_to_records(seeds)
        at.session_state["seed_source"] = "test"
    at.run()
    return clean(at)


def findings(at: AppTest) -> list[str]:
    return [read_markdown(m.value) for m in at.markdown if m.value.startswith("**Row ")]  # as a reader sees it


def test_lint_lists_findings_and_fixes_change_the_table(tmp_path, stub_module):
    at = seeds_page(str(tmp_path / "lint.db"), stub_module, LINTED)
    button(at, "Lint the table").click().run()
    clean(at)
    shown = findings(at)
    assert any(f.startswith("**Row 2** · `duplicate` · the same as row 1") for f in shown), shown
    assert any(f.startswith("**Row 3** · `not_a_task`") for f in shown), shown
    assert any(f.startswith("**Row 4** · `missing_tags` · no skill and no difficulty") for f in shown), shown
    assert any("embedding near-duplicates: stub-embed" in read_markdown(c.value) for c in at.caption)  # the embedder was asked

    assert any(f.startswith("**Row 1** · `missing_tags` · no difficulty") for f in shown), shown
    # beside "Merge into 1", the text of row 1, the row the merge keeps
    duplicate = next(f for f in shown if f.startswith("**Row 2** · `duplicate`"))
    assert f"**Row 1** (kept by a merge): :gray[{' '.join(LINTED[0].instruction.split())[:60]}" in duplicate, duplicate
    button(at, "Merge into 1").click().run()  # row 2 into row 1: what row 1 lacks, nothing it has
    clean(at)
    seeds = at.session_state["seeds"]
    assert len(seeds) == 3
    assert (seeds[0].instruction, seeds[0].skill, seeds[0].difficulty) == ("Explain what a bond is.", "finance", 3)
    shown = findings(at)  # linted again: the set moved up a row
    assert not any("`duplicate`" in f or f.startswith("**Row 1**") for f in shown), shown
    assert any(f.startswith("**Row 2** · `not_a_task`") for f in shown), shown

    drop = [b for b in at.button if b.label == "Drop" and b.key.endswith("_0")]
    assert drop, [b.key for b in at.button]
    drop[0].click().run()  # the first finding: row 2, the title
    clean(at)
    seeds = at.session_state["seeds"]
    assert [s.instruction for s in seeds] == ["Explain what a bond is.", "금리가 오르면 채권 가격은 왜 떨어지나요?"]

    [skill] = [t for t in at.text_input if t.key.startswith("seed_lint_skill_")]
    [difficulty] = [n for n in at.number_input if n.key.startswith("seed_lint_difficulty_")]
    skill.set_value("금융")
    difficulty.set_value(4)
    button(at, "Apply tag").click().run()
    clean(at)
    tagged = at.session_state["seeds"][1]
    assert (tagged.skill, tagged.difficulty, tagged.language) == ("금융", 4, "ko")
    assert "No findings (2 seeds checked)." in texts(at)


def test_history_lists_versions_and_diffs_any_two(tmp_path, stub_module):
    db = str(tmp_path / "hist.db")
    store = Store(db)
    store.save_seed_set("fin", LINTED[:2])
    store.save_seed_set("fin", LINTED[:3], note="added a Korean row")
    store.close()
    at = seeds_page(db, stub_module, [LINTED[0], LINTED[2], LINTED[3]])
    at.text_input(key="seed_set_name").set_value("fin")
    at.text_input(key="seed_set_note").set_value("dropped the duplicate")
    button(at, "Save seed set").click().run()
    clean(at)
    assert any("version 3" in s.value for s in at.success)

    history = next(d.value for d in at.dataframe if "version" in d.value.columns)
    assert list(history["version"]) == [3, 2, 1]
    assert list(history["note"]) == ["dropped the duplicate", "added a Korean row", ""]
    assert "**v2 → v3**: 1 added, 1 removed, 0 changed, 2 unchanged" in texts(at)  # a new save shows its changes
    assert at.selectbox(key="seed_history_load_version").value == 3
    at.selectbox(key="seed_history_from").set_value(1).run()
    clean(at)
    assert "**v1 → v3**: 2 added, 1 removed, 0 changed, 1 unchanged" in texts(at)
    diff = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert sorted(diff["change"]) == ["added", "added", "removed"]
    assert "explain what a  bond is." in set(diff["instruction"])

    at.selectbox(key="seed_history_load_version").set_value(1)
    button(at, "Load this version into the table").click().run()
    clean(at)
    assert at.session_state["seed_source"] == "seed set fin v1"
    assert [s.instruction for s in at.session_state["seeds"]] == [s.instruction for s in LINTED[:2]]


def test_import_a_csv_with_other_column_names(tmp_path, stub_module, monkeypatch):
    monkeypatch.setenv("EVOLAB_SEED_DIRS", str(tmp_path))  # the path box reads only there
    path = tmp_path / "qa.csv"
    path.write_text("question,topic,level,answer\nWhat is duration?,rates,3,...\n듀레이션이란 무엇인가요?,금리,4,...\n",
                    encoding="utf-8")
    at = seeds_page(str(tmp_path / "imp.db"), stub_module)
    at.text_input(key="seed_import_path").set_value(str(path)).run()
    clean(at)
    assert at.selectbox(key="seed_import_map_instruction").options == ["question", "topic", "level", "answer"]
    guessed = [at.selectbox(key=f"seed_import_map_{f}").value for f in ("instruction", "input", "skill", "difficulty")]
    assert guessed == ["question", "(none)", "topic", "level"]  # names other datasets use, as defaults
    at.selectbox(key="seed_import_map_skill").set_value("(none)").run()
    at.selectbox(key="seed_import_map_skill").set_value("topic")
    button(at, "Import with this mapping").click().run()
    clean(at)
    seeds = at.session_state["seeds"]
    assert [(s.instruction, s.skill, s.difficulty, s.language) for s in seeds] == [
        ("What is duration?", "rates", 3, "en"), ("듀레이션이란 무엇인가요?", "금리", 4, "ko")]
    assert at.session_state["seed_source"] == f"import {path}"


def test_import_a_save_to_disk_folder_and_a_path_that_is_not_there(tmp_path, stub_module, monkeypatch):
    monkeypatch.setenv("EVOLAB_SEED_DIRS", str(tmp_path))  # the path box reads only there
    folder = tmp_path / "ds"
    folder.mkdir()
    t = pa.table({"instruction": ["Explain NPV.", "NPV를 설명하세요."], "context": ["", "투자안 A"],
                  "category": [1, 0]})
    with pa.ipc.new_stream(str(folder / "data-00000-of-00001.arrow"), t.schema) as w:
        w.write_table(t)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text(json.dumps(
        {"features": {"category": {"names": ["설명", "explain"], "_type": "ClassLabel"}}}, ensure_ascii=False))
    at = seeds_page(str(tmp_path / "ds.db"), stub_module)
    at.text_input(key="seed_import_path").set_value(str(tmp_path / "missing")).run()
    assert any("missing: no such file" in read_markdown(e.value) for e in at.error), [e.value for e in at.error]
    at.text_input(key="seed_import_path").set_value(str(folder)).run()
    clean(at)
    # the usual names are the defaults: instruction, context as the input, category as the skill
    assert [at.selectbox(key=f"seed_import_map_{f}").value for f in ("instruction", "input", "skill", "difficulty")] \
        == ["instruction", "context", "category", "(none)"]
    button(at, "Import with this mapping").click().run()
    clean(at)
    assert [(s.instruction, s.input, s.skill) for s in at.session_state["seeds"]] == [
        ("Explain NPV.", "", "explain"), ("NPV를 설명하세요.", "투자안 A", "설명")]


def test_lint_fixes_every_row_of_a_kind_at_once(tmp_path, stub_module):
    rows = [Seed("https://example.com/a", skill="x", difficulty=1), Seed("Explain NPV to a beginner.", skill="x", difficulty=2),
            Seed("제3장 포트폴리오 위험", skill="x", difficulty=1)]
    at = seeds_page(str(tmp_path / "bulk.db"), stub_module, rows)
    at.checkbox(key="seed_lint_embed").uncheck()
    button(at, "Lint the table").click().run()
    clean(at)
    assert "embedding near-duplicates not checked (switched off)" in texts(at)
    button(at, "Drop all 2 not a task rows").click().run()
    clean(at)
    assert [s.instruction for s in at.session_state["seeds"]] == ["Explain NPV to a beginner."]
    assert at.session_state["seed_source"] == "test (linted)"
    assert "No findings (1 seed checked)." in texts(at)
