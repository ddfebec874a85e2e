"""The evolution operations of Evol-Instruct (WizardLM, Xu et al. 2023, arXiv:2304.12244, section 3)
and the prompt templates they use (evolab/prompts/<lang>/<name>.txt).

In-depth evolving makes an instruction harder with one of five methods (add constraints, deepen,
concretize, increase reasoning steps, complicate the input); in-breadth evolving writes a new, rarer
instruction in the same domain. Our templates follow the paper's rules in our own wording.
"""
from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from evolab.schema import IN_BREADTH_OPERATIONS, OPERATIONS

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
LANGUAGES = ("en", "ko")
INPUT_FORMATS = ("a Markdown table", "JSON", "XML", "SQL", "Python code")  # English: "... in {format} format"
# complicate_input names its data format in the template's language. The same order in every language, so
# one rng draw picks the same format whatever the language.
INPUT_FORMATS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "en": INPUT_FORMATS,
    "ko": ("마크다운 표", "JSON 데이터", "XML 데이터", "SQL 데이터베이스", "파이썬 코드"),
}
assert all(len(f) == len(INPUT_FORMATS) for f in INPUT_FORMATS_BY_LANGUAGE.values())


def input_formats(language: str = "en") -> tuple[str, ...]:
    """The input format names for complicate_input in a language (English for any other)."""
    return INPUT_FORMATS_BY_LANGUAGE.get(language, INPUT_FORMATS)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Template:
    """A prompt template file. `version` is a hash of its text, so any edit shows up in stored nodes."""

    name: str  # e.g. "en/constraints"
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:10]

    @property
    def fields(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        """Fill {placeholders} in one pass: braces, %s, # or quotes inside a value arrive unchanged
        and are never substituted again (str.format would choke on them)."""
        missing = self.fields - values.keys()
        if missing:
            raise KeyError(f"template {self.name} needs {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)


@functools.lru_cache(maxsize=None)
def load_template(name: str, language: str = "en") -> Template:
    language = language if language in LANGUAGES else "en"
    path = PROMPTS_DIR / language / f"{name}.txt"
    if not path.exists():
        path = PROMPTS_DIR / "en" / f"{name}.txt"
        language = "en"
    return Template(name=f"{language}/{name}", text=path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Operation:
    """One evolution operation: a name, its kind, and what it asks of the model."""

    name: str
    kind: str  # "in-depth" | "in-breadth"
    summary: str

    def template(self, language: str = "en") -> Template:
        return load_template(self.name, language)

    def build_prompt(self, instruction: str, input: str = "", language: str = "en",
                     rng: random.Random | None = None, template: Template | None = None) -> tuple[str, Template]:
        """The exact evolving prompt for this instruction, and the template it came from (`template`: a stored
        version instead of the shipped file, evolab/engine/templates.py)."""
        given = instruction if not input else f"{instruction}\n#Input#:\n{input}"
        values = {"instruction": given}
        template = template or self.template(language)
        if "format" in template.fields:
            formats = input_formats(template.name.partition("/")[0])  # the language actually loaded
            values["format"] = (rng or random.Random(0)).choice(formats)
        return template.render(**values), template


OPERATION_REGISTRY: dict[str, Operation] = {
    "constraints": Operation("constraints", "in-depth", "Add one more constraint or requirement."),
    "deepen": Operation("deepen", "in-depth", "Ask about the issue in more depth and breadth."),
    "concretize": Operation("concretize", "in-depth", "Replace general concepts with specific ones."),
    "reasoning": Operation("reasoning", "in-depth", "Ask explicitly for multiple-step reasoning."),
    "complicate_input": Operation("complicate_input", "in-depth",
                                  "Add structured input data (a table, JSON, XML, SQL or code)."),
    "breadth": Operation("breadth", "in-breadth", "Write a new, rarer instruction in the same domain."),
}
assert set(OPERATION_REGISTRY) == set(OPERATIONS)


def get_operation(name: str) -> Operation:
    try:
        return OPERATION_REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown operation {name!r}; choose from {', '.join(OPERATIONS)}.") from None


def parse_operation_list(text: str) -> dict[str, float]:
    """`constraints,deepen` or `constraints=2,breadth=1` -> weights. Raises ValueError naming the bad part."""
    weights: dict[str, float] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, _, weight = part.partition("=")
        get_operation(name.strip())
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"Weight {weight!r} for {name} is not a number.") from None
        if weights[name.strip()] < 0:
            raise ValueError(f"Weight for {name} is negative.")
    if not weights or not any(weights.values()):
        raise ValueError("Give at least one operation with a positive weight.")
    return weights


def sample_operation(weights: dict[str, float], rng: random.Random) -> str:
    names = [n for n in OPERATIONS if weights.get(n, 0) > 0]
    if not names:
        raise ValueError("No operation has a positive weight.")
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


def is_in_breadth(name: str) -> bool:
    return name in IN_BREADTH_OPERATIONS
