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


IN_DEPTH, IN_BREADTH = "in-depth", "in-breadth"


@dataclass(frozen=True)
class Operation:
    """One evolution operation: a name, its kind, and what it asks of the model.

    Its evolving prompt is the template `prompts/<language>/<name>.txt` (English when a language has none); an
    operation from a plugin names its own folder with `prompts_dir` (holding `en/<name>.txt` and, optionally,
    other languages). `color` draws it in figures (a plugin's operation gets one from a palette otherwise)."""

    name: str
    kind: str  # IN_DEPTH | IN_BREADTH
    summary: str
    prompts_dir: Path | None = None
    color: str | None = None

    def template(self, language: str = "en") -> Template:
        if self.prompts_dir is None:
            return load_template(self.name, language)
        return _load_from(Path(self.prompts_dir), self.name, language)

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


def _load_from(folder: Path, name: str, language: str) -> Template:
    path = folder / language / f"{name}.txt"
    if not path.exists():
        path, language = folder / "en" / f"{name}.txt", "en"
    return Template(name=f"{language}/{name}", text=path.read_text(encoding="utf-8"))


# The registry: every list of operations (the CLI's choices, the Runs and Step pages, figures, estimates) is
# read from here, in registration order.
OPERATION_REGISTRY: dict[str, Operation] = {}


def register_operation(operation: Operation) -> Operation:
    """Add an operation. Returns it, so `register_operation(Operation(...))` is the one line."""
    if not isinstance(operation, Operation):
        raise TypeError(f"register_operation takes an Operation, not {operation!r}")
    name = operation.name
    if not name or not name.replace("_", "").isalnum() or not name.isascii() or name in ("seed", "sample", "all"):
        raise ValueError(f"operation name {name!r}: use a short id of letters, digits and _ (not seed/sample/all)")
    if operation.kind not in (IN_DEPTH, IN_BREADTH):
        raise ValueError(f"operation {name!r}: kind must be {IN_DEPTH!r} or {IN_BREADTH!r}, not {operation.kind!r}")
    if name in OPERATION_REGISTRY and OPERATION_REGISTRY[name] != operation:
        raise ValueError(f"an operation named {name!r} is already registered")
    operation.template("en")  # a missing template fails here, naming the file, not in the middle of a run
    OPERATION_REGISTRY[name] = operation
    return operation


def unregister_operation(name: str) -> None:
    OPERATION_REGISTRY.pop(name, None)


def operation_names() -> tuple[str, ...]:
    return tuple(OPERATION_REGISTRY)


def in_depth_operations() -> tuple[str, ...]:
    return tuple(n for n, op in OPERATION_REGISTRY.items() if op.kind == IN_DEPTH)


def default_weights() -> dict[str, float]:
    """Every registered operation at weight 1: what a run that names no operations samples from."""
    return {op: 1.0 for op in OPERATION_REGISTRY}


def weights_of(weights: dict[str, float] | None) -> dict[str, float]:
    """A run's operation weights, or the default when it names none."""
    return dict(weights) if weights else default_weights()


for _op in (
    Operation("constraints", IN_DEPTH, "Add one more constraint or requirement.", color="#1f77b4"),
    Operation("deepen", IN_DEPTH, "Ask about the issue in more depth and breadth.", color="#ff7f0e"),
    Operation("concretize", IN_DEPTH, "Replace general concepts with specific ones.", color="#2ca02c"),
    Operation("reasoning", IN_DEPTH, "Ask explicitly for multiple-step reasoning.", color="#d62728"),
    Operation("complicate_input", IN_DEPTH, "Add structured input data (a table, JSON, XML, SQL or code).",
              color="#9467bd"),
    Operation("breadth", IN_BREADTH, "Write a new, rarer instruction in the same domain.", color="#8c564b"),
):
    register_operation(_op)


def get_operation(name: str) -> Operation:
    try:
        return OPERATION_REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown operation {name!r}; choose from {', '.join(OPERATION_REGISTRY)}.") from None


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
    return check_weights(weights)


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Operation weights as a run may use them: known operations, none negative, at least one above 0 (`--ops`
    and the Runs page's table). Raises ValueError naming the bad part; returns the weights."""
    for name, weight in weights.items():
        get_operation(name)
        if weight < 0:
            raise ValueError(f"Weight for {name} is negative: use 0 to switch an operation off.")
    if not weights or not any(w > 0 for w in weights.values()):
        raise ValueError("Give at least one operation with a positive weight.")
    return weights


def sample_operation(weights: dict[str, float], rng: random.Random) -> str:
    names = [n for n in OPERATION_REGISTRY if weights.get(n, 0) > 0]
    if not names:
        raise ValueError("No operation has a positive weight.")
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]

