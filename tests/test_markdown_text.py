"""Issue 22, finding 7: Markdown in model and user text renders. An evolved instruction `![x](https://example.org/p.png)`
made the browser fetch from outside, and `[click](https://evil.example)` in a label is a link that misleads.

`evolab.text.markup.plain` makes text literal wherever Markdown renders it; these tests render its output with a
CommonMark parser (markdown-it-py) and check that exactly the text comes back, with no image, link, emphasis or HTML,
then open every page on a store whose runs carry such text and check that no Markdown source a page sends holds it
unescaped. tests/test_browser_markdown.py checks the same pages in a real browser: no request to another host.
"""
from __future__ import annotations

import html
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from markdown_it import MarkdownIt

from evolab.engine import templates
from evolab.export import formats as export
from evolab.export.card import dataset_card
from evolab.schema import Node, RunConfig, Score, Seed
from evolab.store import Store
from evolab.text.markup import WORD_JOINER, code, plain

IMG = "![x](https://example.org/p.png)"
LINK = "[click](https://evil.example)"
HOSTILE = (f"Explain NPV {IMG} and {LINK} <img src=https://example.org/h.png> <https://evil.example/auto> "
           "https://evil.example/bare www.evil.example **bold** _it_ :red[red] :material/home: $x^2$ \\*")
EXAMPLES = 300  # hypothesis examples of the property test (also written in the fault matrix)

NASTY = [
    IMG, LINK, HOSTILE,
    "<https://evil.example>", "<evil@example.org>", "https://evil.example", "www.evil.example", "me@evil.example",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "&amp; &lt;b&gt; &#x41;",
    "*em* **strong** _u_ __uu__ ~~del~~ `code` ``two``",
    "# heading", "## h2 ![x](https://example.org/p.png)", "Title\n===", "Title\n---", "> quote", "- item", "1. one",
    "| a | b |\n|---|---|\n| 1 | 2 |", "[ref]\n\n[ref]: https://evil.example", "![ref][r]\n\n[r]: https://example.org/p.png",
    "back\\slash \\*not em\\* \\\\", "trailing backslash \\", "line  \nbreak",
    "복리 이자를 계산하세요 ![그림](https://example.org/p.png) [링크](https://evil.example)",
    ":material/home: :material_home: :streamlit: :smile: :red[red] :blue-badge[b] $x$ $$y$$",
    "    indented code ![x](https://example.org/p.png)", "```\nfence\n```", "a_b_c 2*3*4",
]


def render(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


def rendered_text(markdown: str) -> str:
    """What a reader sees: the rendered HTML's text, whitespace collapsed."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", render(markdown))).replace(WORD_JOINER, "")
    return " ".join(text.split())


def assert_literal(source: str, text: str) -> None:
    out = render(source)
    assert not re.search(r"<(img|a|em|strong|h\d|script|code|pre|blockquote|ul|ol|table|hr)\b", out), (source, out)
    assert rendered_text(source) == " ".join(text.split()), (source, out)


@pytest.mark.parametrize("text", NASTY)
def test_plain_renders_as_exactly_its_text(text):
    assert_literal(plain(text), text)


def test_plain_escapes_every_ascii_punctuation_character():
    """GFM's bare https:// and www. links, emails, Streamlit's :color[...] directives, :material/...: icons and
    $ maths all need an unescaped punctuation character: none is left but "-", "+" and "=" inside a line (they
    start a list, a rule or a heading only at a line's start), so "gpt-4o-mini" stays readable."""
    out = plain(HOSTILE + "\n- a\n+ b\n===\nc-d+e=f")
    unescaped = re.sub(r"\\.", "", out)
    assert set(unescaped) & set(string.punctuation) == {"-", "+", "="}, out
    assert "\\- a\n\\+ b\n\\===\nc-d+e=f" in out
    assert plain("gpt-4o-mini") == "gpt-4o-mini"
    assert "example.org" not in out and "evil.example" not in out and ":material/" not in out


def test_plain_keeps_korean_and_streamlit_shortcodes_show_as_text():
    assert plain("복리 이자") == "복리 이자"
    assert plain(None) == ""
    # Streamlit turns ":material_home:" and ":streamlit:" into an icon and a logo after escapes are resolved:
    # an invisible word joiner after the colon keeps them as text
    assert plain(":material_home:").startswith("\\:" + WORD_JOINER)
    assert plain(":streamlit:").startswith("\\:" + WORD_JOINER)
    # GFM links bare addresses in text nodes after escapes are resolved: the joiner breaks them too
    assert plain("https://e.example www.e.example a@e.example") == (
        f"https\\:{WORD_JOINER}\\/\\/e\\.example www{WORD_JOINER}\\.e\\.example a\\@{WORD_JOINER}e\\.example")


@pytest.mark.parametrize("text", ["plain", "a`b", "``x``", "`", "ends `", "multi\nline", IMG])
def test_code_span_cannot_be_ended_early(text):
    out = render(code(text))
    assert out.count("<code>") == 1 and "<img" not in out and "<a " not in out
    inner = html.unescape(re.search(r"<code>(.*)</code>", out, re.S).group(1))
    assert inner == " ".join(text.splitlines()) or inner == text.strip()
    assert code("") == ""


printable = hs.lists(hs.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\u2060")
                     | hs.sampled_from(list("\n\r\t![]()<>*_`#&\\:$~|-=+.@/") + ["https://", "www.", "    ", IMG, LINK]),
                     max_size=60).map("".join)


@settings(max_examples=EXAMPLES, deadline=None)
@given(printable)
def test_plain_is_literal_for_any_text(text):
    assert_literal(plain(text), text)


# -- a store whose runs carry such text (the pages' tests and the browser test use it) -----------------------------
RUN_NAME = f"run {LINK} {IMG}"
SKILL = f"skill {IMG}"
DETAIL = f"judge said 'Equal' {IMG} {LINK}"
NOTE = f"note {IMG} {LINK}"
RATIONALE = f"rationale {IMG} {LINK}"
MODEL = "gpt-4o-mini"


def hostile_store(path) -> tuple[Store, dict[str, str]]:
    """A finished run (named with a link and an image) whose seed, children, skills, judge details, review notes and
    a tuning session's candidate carry a Markdown image and a link; and a step-through session over the same text."""
    store = Store(str(path))
    seeds = [Seed(HOSTILE, skill=SKILL, difficulty=3)]
    run_id = store.create_run(RunConfig(model=MODEL, rounds=2), seeds, name=RUN_NAME, run_id="run-md")
    seed = Node(id="seed", run_id=run_id, parent_id=None, root_id="seed", round=0, operation="seed",
                instruction=HOSTILE, response=f"Answer {IMG}", status="seed", skill=SKILL)
    kept = Node(id="kept", run_id=run_id, parent_id="seed", root_id="seed", round=1, operation="deepen",
                instruction=f"Child {IMG} {LINK}", input=f"input {IMG}", response=f"reply {LINK}", status="kept",
                skill=SKILL, detail=f"set by hand (was eliminated): review: {NOTE}", prompt=f"prompt {IMG}",
                raw_output=f"raw {IMG}", template="deepen")
    equal = Node(id="equal", run_id=run_id, parent_id="seed", root_id="seed", round=1, operation="breadth",
                 instruction=f"Other child {LINK}", response="r", status="eliminated", rule="no_new_information",
                 skill=SKILL, detail=DETAIL)
    store.save_nodes([seed, kept, equal])
    store.add_scores([Score("kept", "quality", 4.5, MODEL, f"[json] {IMG}"),
                      Score("kept", "difficulty", 6.0, MODEL, DETAIL),
                      Score("equal", "rule:no_new_information", 0.0, MODEL, DETAIL),
                      Score("equal", "quality", 4.4, MODEL, DETAIL)])
    store.set_run_status(run_id, "finished")
    store.add_review({"node_id": "kept", "run_id": run_id, "reviewer": f"me {LINK}", "verdict": "keep",
                      "note": NOTE, "reasons": ["audit:quality"], "applied": True})
    # Step through: an interactive session over the same seed.
    session = store.create_run(RunConfig(model=MODEL, rounds=1), seeds, name=f"steps {LINK}", run_id="steps-md")
    store.save_nodes([Node(id="s-seed", run_id=session, parent_id=None, root_id="s-seed", round=0, operation="seed",
                           instruction=HOSTILE, status="seed", skill=SKILL),
                      Node(id="s-kid", run_id=session, parent_id="s-seed", root_id="s-seed", round=1,
                           operation="deepen", instruction=f"Child {IMG} {LINK}", status="eliminated", rule="manual",
                           detail=f"set by hand (was kept): {NOTE}", skill=SKILL)])
    store.set_run_status(session, "interactive")
    # Templates: a tuning session whose candidate's rationale and rejection reason are model text.
    store.create_tuning_session({"id": "tune-md", "run_id": run_id, "operation": "deepen", "language": "en",
                                 "parent_version": templates.versions(store, "deepen", "en")[0].version, "status": "measured", "detail": f"optimizer said {IMG}"})
    for idx, (status, reason) in enumerate([("measured", None), ("rejected", f"reason {LINK}"), ("measured", None)]):
        store.add_tuning_candidate({"session_id": "tune-md", "idx": idx, "hash": f"h{idx}",
                                    "text": f"template {idx} {{instruction}}", "rationale": RATIONALE,
                                    "status": status, "reason": reason})
    return store, {"run": run_id, "session": session}


# -- the dataset card ----------------------------------------------------------------------------------------------
def test_dataset_card_shows_the_run_name_and_model_as_text(tmp_path):
    store, ids = hostile_store(tmp_path / "md.db")
    odd = store.create_run(RunConfig(model=f"m`odel {IMG}", rounds=1), [Seed("x")], name=RUN_NAME, run_id="odd")
    for run_id in (ids["run"], odd):
        card = dataset_card(store, run_id).text  # the body, as the Hub renders it under its metadata
        out = render(card)
        assert "<img" not in out and "<a " not in out, out
        shown = html.unescape(re.sub(r"<[^>]+>", "", out)).replace(WORD_JOINER, "")
        assert f"Dataset card: {RUN_NAME}" in shown, out
    assert f"m`odel {IMG}" in shown  # the model name in its code span, whole
    store.close()


# -- the pages (AppTest) -------------------------------------------------------------------------------------------
def markdown_sources(at) -> list[str]:
    """Every string a page hands Streamlit to render as Markdown: texts, alerts, and the labels and help of buttons,
    expanders, metrics, checkboxes, radios (their options too), tabs and other widgets (selectbox and multiselect
    options are plain text)."""
    out = []
    for group in (at.title, at.header, at.subheader, at.markdown, at.caption, at.info, at.warning, at.error,
                  at.success, at.toast):
        out += [str(e.value) for e in group]
    for group in (at.button, at.checkbox, at.toggle, at.radio, at.selectbox, at.multiselect, at.text_input,
                  at.number_input, at.slider, at.metric, at.expander, at.tabs):
        for e in group:
            out += [str(getattr(e, name)) for name in ("label", "help", "delta") if getattr(e, name, None)]
            if group is at.radio:
                out += [str(o) for o in e.options]
    return out


def assert_nothing_renders(at) -> list[str]:
    sources = markdown_sources(at)
    for s in sources:
        out = render(s)
        assert "evil.example" not in s and "example.org" not in s, s  # every "." of such text is escaped
        assert "<img" not in out and "<a " not in out, (s, out)
    return sources


def shown(at) -> str:
    """What a reader of the page sees in its Markdown, rendered."""
    return "\n".join(rendered_text(s) for s in markdown_sources(at))


@pytest.fixture
def pages(tmp_path, monkeypatch):
    from test_app import open_page

    monkeypatch.setenv("EVOLAB_APP_WARMUP", "0")
    store, ids = hostile_store(tmp_path / "md.db")
    yield (lambda page, **kw: open_page(store.path, page, **kw)), ids
    store.close()


@pytest.fixture(autouse=True)
def _app_mode(monkeypatch):
    import streamlit as st
    from test_app import _navigation_mode

    _navigation_mode.__wrapped__(monkeypatch)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


def test_lineage_shows_instructions_labels_and_details_as_text(pages):
    open_page, ids = pages
    at = open_page("lineage", query={"run": ids["run"], "node": "seed"})
    assert_nothing_renders(at)
    children = [b.label for b in at.button if b.key and b.key.startswith("lineage_child_")]
    assert len(children) == 2
    assert any(f"Child {IMG}" in rendered_text(label) for label in children), children
    assert any(f"Other child {LINK}" in rendered_text(label) for label in children), children
    assert f"skill {SKILL}" in shown(at)
    at = open_page("lineage", query={"run": ids["run"], "node": "equal"})
    assert_nothing_renders(at)
    assert DETAIL in shown(at)  # the judge's excerpt, as the text it is
    at = open_page("lineage", query={"run": ids["run"], "node": "kept"})
    assert_nothing_renders(at)
    assert NOTE in shown(at)  # the review note


def test_review_step_through_runs_and_export_show_model_text_as_text(pages):
    open_page, ids = pages
    at = open_page("review", query={"run": ids["run"]})
    assert "In the queue because:" in shown(at)
    assert_nothing_renders(at)
    at = open_page("evolve", query={"run": ids["session"], "node": "s-kid"})
    assert_nothing_renders(at)
    assert NOTE in shown(at)
    at = open_page("runs", query={"run": ids["run"]})
    assert_nothing_renders(at)
    at = open_page("export", query={"run": ids["run"]})
    assert_nothing_renders(at)
    assert f"Dataset card: {RUN_NAME}" in shown(at)
    at = open_page("compare", query={"run": ids["run"]})
    assert_nothing_renders(at)


def test_templates_page_shows_candidates_rationale_as_text(pages):
    open_page, ids = pages
    from test_app import clean

    at = open_page("templates", query={"run": ids["run"]})
    at.selectbox(key="templates_op").set_value("deepen").run()
    clean(at)
    labels = [e.label for e in at.expander]
    assert any(RATIONALE[:60] in rendered_text(label) for label in labels), labels
    assert f"reason {LINK}" in shown(at) and f"optimizer said {IMG}" in shown(at)
    assert_nothing_renders(at)
