"""Operations and their templates: the six Evol-Instruct operations, English and Korean templates,
safe substitution (hypothesis), template name and version on every node."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolab.engine.operations import (
    INPUT_FORMATS,
    LANGUAGES,
    PROMPTS_DIR,
    Template,
    get_operation,
    input_formats,
    load_template,
    operation_names,
    parse_operation_list,
    sample_operation,
    weights_of,
)
from evolab.schema import RunConfig

EVOLVING = list(operation_names())


def test_a_default_run_samples_the_papers_six_operations_evenly():
    """Evol-Instruct samples its five in-depth operations and in-breadth uniformly: so does a run left at
    its defaults."""
    rng = random.Random(0)
    weights = weights_of(RunConfig().operation_weights)  # an empty table: every registered operation at 1
    counts = Counter(sample_operation(weights, rng) for _ in range(6000))
    assert set(counts) == {"constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"}
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_in_depth_rewrites_the_given_prompt_and_in_breadth_creates_a_new_one():
    for name in ("constraints", "deepen", "concretize", "reasoning", "complicate_input", "breadth"):
        prompt, _ = get_operation(name).build_prompt("Sort a list.", language="en", rng=random.Random(1))
        asks_for = prompt[prompt.index("Sort a list."):]
        if name == "breadth":
            assert "#Created Prompt#" in asks_for and "#Rewritten Prompt#" not in asks_for
        else:
            assert "#Rewritten Prompt#" in asks_for and "#Created Prompt#" not in asks_for


def test_unknown_operation_is_named_in_the_error():
    with pytest.raises(ValueError, match="frobnicate"):
        get_operation("frobnicate")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", EVOLVING + ["respond", "respond_with_input", "equal", "difficulty", "quality"])
def test_every_template_exists_in_english_and_korean(name, language):
    assert (PROMPTS_DIR / language / f"{name}.txt").exists()
    t = load_template(name, language)
    assert t.name == f"{language}/{name}"
    assert len(t.version) == 10


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", EVOLVING)
def test_evolving_templates_have_one_instruction_slot_and_the_papers_markers(name, language):
    t = load_template(name, language)
    assert t.text.count("{instruction}") == 1
    assert t.fields == ({"instruction", "format"} if name == "complicate_input" else {"instruction"})
    # The paper's prompt layout: the given instruction, then where the model writes its rewrite.
    marker = "#Created Prompt#" if name == "breadth" else "#Rewritten Prompt#"
    assert t.text.index("#Given Prompt#") < t.text.index("{instruction}") < t.text.rindex(marker)


def test_korean_templates_are_korean_and_differ_from_english():
    for name in EVOLVING:
        ko, en = load_template(name, "ko"), load_template(name, "en")
        assert ko.text != en.text and ko.version != en.version
        assert sum("\uac00" <= ch <= "\ud7a3" for ch in ko.text) > 20
        assert "한국어로" in ko.text  # asks for a Korean rewrite


def test_unknown_language_falls_back_to_english():
    assert load_template("deepen", "fr").name == "en/deepen"


def test_each_operation_asks_for_its_own_change():
    cues = {"constraints": "constraint", "deepen": "deeper", "concretize": "specific", "reasoning": "reasoning",
            "complicate_input": "structured input data", "breadth": "brand-new"}
    for name, cue in cues.items():
        prompt, template = get_operation(name).build_prompt("Sort a list.", language="en")
        assert cue in prompt.lower()
        assert template.name == f"en/{name}"


def test_complicate_input_names_a_format_chosen_by_the_rng():
    seen = set()
    for i in range(40):
        prompt, _ = get_operation("complicate_input").build_prompt("Sort a list.", rng=random.Random(i))
        fmts = [f for f in INPUT_FORMATS if f"in {f} format" in prompt]
        assert len(fmts) == 1
        seen.add(fmts[0])
    assert len(seen) >= 3
    a = get_operation("complicate_input").build_prompt("Sort a list.", rng=random.Random(7))[0]
    b = get_operation("complicate_input").build_prompt("Sort a list.", rng=random.Random(7))[0]
    assert a == b


def test_input_is_given_as_its_own_section():
    prompt, _ = get_operation("deepen").build_prompt("Summarise the text.", "The cat sat on the mat.")
    assert "Summarise the text.\n#Input#:\nThe cat sat on the mat." in prompt


def test_template_version_changes_with_its_text():
    a, b = Template("en/x", "Do {instruction}."), Template("en/x", "Please do {instruction}.")
    assert a.version != b.version
    assert a.version == Template("en/y", "Do {instruction}.").version  # the text, not the name


def test_render_refuses_a_missing_value():
    with pytest.raises(KeyError, match="instruction"):
        load_template("deepen").render()


# -- safe substitution ---------------------------------------------------------------------------------
TRICKY = [
    "Use {braces} and {instruction} and {format} and {{double}} and {0} and {}",
    "Print '%s' and %d and %(name)s and 100%",
    "# Heading\n#Rewritten Prompt#: not a marker\n## more",
    'He said "hello" and \'bye\' and `code` and “curly”',
    "line one\nline two\r\nline three\n\n",
    "\\1 \\g<0> $1 ${x} \\n",
]


def _pieces(template: Template, rendered_other: dict[str, str]) -> tuple[str, str]:
    before, after = template.text.split("{instruction}")
    fill = lambda s: Template("x", s).render(**{k: v for k, v in rendered_other.items()  # noqa: E731
                                                if k in Template("x", s).fields})
    return fill(before), fill(after)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_instructions_arrive_unchanged(text):
    for name in EVOLVING:
        for language in LANGUAGES:
            prompt, template = get_operation(name).build_prompt(text, language=language, rng=random.Random(3))
            fmt = random.Random(3).choice(input_formats(language))
            before, after = _pieces(template, {"format": fmt})
            assert prompt == before + text + after


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(min_size=0, max_size=200), name=st.sampled_from(EVOLVING), language=st.sampled_from(LANGUAGES),
       seed=st.integers(0, 1000))
def test_any_text_appears_verbatim_exactly_once_at_the_placeholder(text, name, language, seed):
    prompt, template = get_operation(name).build_prompt(text, language=language, rng=random.Random(seed))
    fmt = random.Random(seed).choice(input_formats(language))
    before, after = _pieces(template, {"format": fmt})
    assert prompt == before + text + after  # verbatim, at the placeholder, nothing substituted inside it
    # Exactly once: a delimited copy of the text cannot occur anywhere else.
    wrapped = "\u27e6" + text.replace("\u27e6", "").replace("\u27e7", "") + "\u27e7"
    prompt2, _ = get_operation(name).build_prompt(wrapped, language=language, rng=random.Random(seed))
    assert prompt2.count(wrapped) == 1


@settings(max_examples=100, deadline=None)
@given(instruction=st.text(max_size=80), input=st.text(min_size=1, max_size=80).filter(lambda s: s.strip()))
def test_any_input_arrives_verbatim_too(instruction, input):
    prompt, template = get_operation("constraints").build_prompt(instruction, input)
    before, after = template.text.split("{instruction}")
    assert prompt == before + f"{instruction}\n#Input#:\n{input}" + after


@settings(max_examples=100, deadline=None)
@given(values=st.fixed_dictionaries({k: st.text(max_size=50) for k in ("instruction", "input", "response")}))
def test_quality_template_fills_each_value_once(values):
    t = load_template("quality")
    parts = re.split(r"\{(instruction|input|response)\}", t.text)
    expected = "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(parts))
    assert t.render(**values) == expected


# -- operation lists and sampling -----------------------------------------------------------------------
def test_parse_operation_list():
    assert parse_operation_list("constraints,deepen") == {"constraints": 1.0, "deepen": 1.0}
    assert parse_operation_list(" constraints=2 , breadth=0.5 ") == {"constraints": 2.0, "breadth": 0.5}
    for bad, word in [("constraints,bogus", "bogus"), ("deepen=abc", "abc"), ("deepen=-1", "negative"),
                      ("", "at least one"), ("deepen=0", "at least one")]:
        with pytest.raises(ValueError, match=word):
            parse_operation_list(bad)


def test_zero_weight_operations_never_appear_and_weights_steer_the_mix():
    rng = random.Random(1)
    weights = {"constraints": 3.0, "deepen": 1.0, "breadth": 0.0, "reasoning": 0.0}
    counts = Counter(sample_operation(weights, rng) for _ in range(4000))
    assert set(counts) == {"constraints", "deepen"}
    assert 2.5 < counts["constraints"] / counts["deepen"] < 3.6


def test_a_single_operation_is_the_only_one_sampled():
    rng = random.Random(5)
    assert {sample_operation({"concretize": 1.0}, rng) for _ in range(200)} == {"concretize"}
    with pytest.raises(ValueError):
        sample_operation({"concretize": 0.0}, rng)
