"""Template versions in the store: saved with their parent, found by name or hash prefix after a reload, diffed
against the parent, and named in a run's config; English and Korean. Also the optimizer-reply reader."""
from __future__ import annotations

import pytest

from evolab.engine import templates
from evolab.engine.operations import load_template
from evolab.schema import RunConfig
from evolab.store import Store
from evolab.text.reading import TEMPLATE_CANDIDATES

KO_EXTRA = "\n- 숫자가 들어간 조건을 하나 넣으세요."


def test_versions_survive_a_reload_with_parent_and_diff(tmp_path):
    path = tmp_path / "v.db"
    store = Store(path)
    root = templates.shipped_version("deepen", "ko")
    first = templates.save_version(store, "deepen", "ko", root.text + KO_EXTRA, "숫자-조건", root.version, "손으로 고침")
    second = templates.save_version(store, "deepen", "ko", first.text + "\n- 짧게.", "짧게", first.version)
    store.close()

    store = Store(path)
    names = [v.name for v in templates.versions(store, "deepen", "ko")]
    assert names == ["shipped", "숫자-조건", "짧게"]  # the stored copy of the shipped text is shown once
    found = templates.resolve(store, "deepen", "짧게")[0]
    assert found.version == second.version and found.parent_version == first.version
    assert templates.resolve(store, "deepen", second.version[:5])[0].name == "짧게"
    diff = templates.diff_against_parent(store, found)
    assert diff.splitlines()[-1] == "+- 짧게." and "숫자-조건" in diff
    root_diff = templates.diff_against_parent(store, templates.resolve(store, "deepen", "숫자-조건")[0])
    assert "+" + KO_EXTRA.strip("\n") in root_diff
    assert templates.diff_against_parent(store, root) is None
    # English versions of the same operation are separate.
    assert [v.name for v in templates.versions(store, "deepen", "en")] == ["shipped"]


def test_names_prefixes_and_placeholders_are_checked(tmp_path):
    store = Store(tmp_path / "v.db")
    root = templates.shipped_version("complicate_input", "en")
    templates.save_version(store, "complicate_input", "en", root.text + "\nUse realistic values.", "realistic",
                           root.version)
    with pytest.raises(ValueError, match="already named 'realistic'"):
        templates.save_version(store, "complicate_input", "en", root.text + "\nOther.", "realistic", root.version)
    with pytest.raises(ValueError, match=r"drops \{format\}"):
        templates.save_version(store, "complicate_input", "en", root.text.replace("{format}", "JSON"), "no-format",
                               root.version)
    with pytest.raises(ValueError, match="Give the version a name"):
        templates.save_version(store, "complicate_input", "en", root.text + "\nX.", "  ", root.version)
    with pytest.raises(ValueError, match="No complicate_input template version 'nope'"):
        templates.resolve(store, "complicate_input", "nope")
    with pytest.raises(ValueError, match="Unknown operation"):
        templates.resolve(store, "shuffle", "realistic")
    with pytest.raises(ValueError, match="No complicate_input template version"):  # 3 characters match too much
        templates.resolve(store, "complicate_input", root.version[:3])
    # "shipped" names the shipped file in every language: one version per language.
    assert {v.language for v in templates.resolve(store, "complicate_input", "shipped")} == {"en", "ko"}


def test_run_config_names_versions_and_a_missing_one_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "v.db")
    root = templates.shipped_version("constraints", "en")
    v = templates.save_version(store, "constraints", "en", root.text + "\nBe concrete.", "concrete", root.version)
    chosen = templates.parse_template_options(store, ["constraints=concrete"])
    assert chosen == {"en/constraints": v.version}
    got = templates.run_templates(store, RunConfig(templates=chosen))
    assert got["en/constraints"].text == v.text and got["en/constraints"].version == v.version
    assert templates.parse_template_options(store, ["breadth=shipped"]) == {
        "en/breadth": load_template("breadth", "en").version, "ko/breadth": load_template("breadth", "ko").version}
    with pytest.raises(ValueError, match="use OP=VERSION"):
        templates.parse_template_options(store, ["constraints"])
    other = Store(tmp_path / "other.db")
    with pytest.raises(ValueError, match=f"template version {v.version} for en/constraints"):
        templates.run_templates(other, RunConfig(templates=chosen))


@pytest.mark.parametrize("reply, expected", [
    ('{"candidates": [{"rationale": "r", "template": "A {instruction}"}]}', [("A {instruction}", "r")]),
    ('```json\n[{"template": "B {instruction}", "reason": "이유"}]\n```', [("B {instruction}", "이유")]),
    ('<think>hmm</think>{"templates": ["C {instruction}"]}', [("C {instruction}", "")]),
    ("첫 번째 수정본:\n```\n다시 쓰세요 {instruction}\n```\n두 번째:\n```text\n더 어렵게 {instruction}\n```",
     [("다시 쓰세요 {instruction}", "첫 번째 수정본:"), ("더 어렵게 {instruction}", "두 번째:")]),
])
def test_optimizer_replies_are_read(reply, expected):
    got = TEMPLATE_CANDIDATES.read(reply)
    assert [(c["template"], c["rationale"]) for c in got] == expected


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", '{"candidates": []}', '{"candidates": [{"x": 1}]}',
                                   "죄송하지만 도와드릴 수 없습니다."])
def test_unusable_optimizer_replies_are_unreadable(reply):
    assert TEMPLATE_CANDIDATES.read(reply) is None
