"""Scorers: each measures a node and stores score rows. One class and one `register_scorer(...)` line each.

Built in: `complexity` (the cx_* measures, no LLM), `difficulty` (WizardLM's 1-10 question, appendix) and
`quality` (AlpaGasus's 0-5 accuracy rating, Chen et al. 2023, arXiv:2307.08701). The LLM scorers ask for
structured output first, then read free text, then retry once more strictly (evolab.text.reading); a reply
with no readable score is stored as missing (value None, the detail says "unreadable"), never 0.

A run uses the scorers its config names (`--scorers`; by default the built-in ones). A scorer that needs
neither the answer nor the LLM runs as soon as the child is evolved; the others run once it is answered (or
just before a rule that needs scores, such as the quality filter).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from evolab.engine.operations import load_template
from evolab.llm.base import BudgetExceeded, LLMError
from evolab.llm.client import LLMClient
from evolab.schema import Node, RunConfig, Score
from evolab.text.complexity import METRICS as CX_METRICS
from evolab.text.complexity import complexity_scores
from evolab.text.reading import DIFFICULTY, QUALITY, ReplyKind, ask
from evolab.text.replies import read_score

HEURISTIC = "heuristic"  # the judge of a score no model gave


def parse_score(text: str, low: float, high: float) -> float | None:
    """The score in [low, high] the reply gives, or None (evolab.text.replies.read_score)."""
    return read_score(text, low, high)


@dataclass
class ScoreContext:
    """What a scorer may use besides the node: the run's client (for LLM calls) and config."""

    client: LLMClient | None
    config: RunConfig


class Scorer:
    """One measurement of a node. Subclasses set the class attributes and implement `score`.

    `score(node, context)` returns a number (stored under `name`), None (no value, stored as missing), a
    `Score`, or a list of them; it may be a coroutine. An exception other than a budget stop is stored as a
    missing score whose detail names it: one bad scorer never stops a run."""

    name: ClassVar[str] = ""  # the id for --scorers, and the metric of a plain-number score
    metrics: ClassVar[tuple[str, ...]] = ()  # every metric its scores use (default: the name)
    label: ClassVar[str] = ""  # for axes and pickers (default: the name)
    scale: ClassVar[tuple[float, float] | None] = None  # the ends of its scale, when it has them
    needs_response: ClassVar[bool] = False  # scored once the responder has answered
    uses_llm: ClassVar[bool] = False  # calls the run's model (costs money; counted by the estimate)
    default: ClassVar[bool] = False  # on in a run that does not name its scorers
    drift: ClassVar[tuple[str, ...] | None] = None  # metrics the Drift page offers (default: all of them)
    # For the cost estimate of an LLM scorer: prompt tokens beyond the instruction (and the answer, when it reads
    # one), and reply tokens (None: as many as the scenario's judge reply).
    estimate_tokens: ClassVar[tuple[int, int | None]] = (100, None)

    def score(self, node: Node, context: ScoreContext) -> Any:
        raise NotImplementedError

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return cls.metrics or (cls.name,)

    @classmethod
    def drift_metrics(cls) -> tuple[str, ...]:
        return cls.metric_names() if cls.drift is None else cls.drift

    @property
    def instant(self) -> bool:
        """Runs right after evolution: needs neither the answer nor the model."""
        return not self.needs_response and not self.uses_llm


SCORERS: dict[str, Scorer] = {}


def register_scorer(scorer: Scorer) -> Scorer:
    """Add a scorer (an instance). Returns it, so `register_scorer(MyScorer())` is the one line."""
    if not isinstance(scorer, Scorer):
        raise TypeError(f"register_scorer takes a Scorer instance, not {scorer!r}")
    name = type(scorer).name
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"{type(scorer).__name__}.name must be a short id of letters, digits and _ (got {name!r})")
    if name in SCORERS and type(SCORERS[name]) is not type(scorer):
        raise ValueError(f"a scorer named {name!r} is already registered ({type(SCORERS[name]).__name__})")
    taken = {m: other for other, s in SCORERS.items() if other != name for m in s.metric_names()}
    clash = [m for m in scorer.metric_names() if m in taken]
    if clash:
        raise ValueError(f"scorer {name!r}: metric {clash[0]!r} is already the scorer {taken[clash[0]]!r}'s")
    SCORERS[name] = scorer
    return scorer


def unregister_scorer(name: str) -> None:
    SCORERS.pop(name, None)


def default_scorers() -> list[str]:
    return [n for n, s in SCORERS.items() if s.default]


def parse_scorers(text: str) -> list[str]:
    """`complexity,difficulty,words` -> the names, checked against the registry (ValueError names the bad one)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in SCORERS:
            raise ValueError(f"Unknown scorer {n!r}; choose from {', '.join(SCORERS)} "
                             "(a plugin's scorer needs EVOLAB_PLUGINS or its package installed).")
    return list(dict.fromkeys(names))


def chosen_scorers(config: RunConfig) -> list[Scorer]:
    """The scorers a run uses, in registry order; a name no longer registered raises ValueError."""
    names = config.scorers if config.scorers is not None else default_scorers()
    missing = [n for n in names if n not in SCORERS]
    if missing:
        raise ValueError(f"This run uses the scorer {missing[0]!r}, which is not registered: load the plugin that "
                         "provides it (EVOLAB_PLUGINS=module or its installed package).")
    return [s for n, s in SCORERS.items() if n in names]


def chosen_scorers_or_registered(config: RunConfig) -> list[Scorer]:
    """For showing a stored run: the scorers it used that are registered now (a missing plugin's are left out)."""
    names = config.scorers if config.scorers is not None else default_scorers()
    return [s for n, s in SCORERS.items() if n in names]


def score_metrics() -> list[str]:
    """Every metric a registered scorer produces, in registry order."""
    return [m for s in SCORERS.values() for m in s.metric_names()]


def scorer_of(metric: str) -> Scorer | None:
    return next((s for s in SCORERS.values() if metric in s.metric_names()), None)


async def run_scorer(scorer: Scorer, node: Node, context: ScoreContext) -> list[Score]:
    """A scorer's rows for a node; anything but a budget stop becomes a missing score that says what failed."""
    judge = context.client.model if scorer.uses_llm and context.client is not None else HEURISTIC
    try:
        value = scorer.score(node, context)
        if inspect.isawaitable(value):
            value = await value
    except BudgetExceeded:
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's bug is stored, not raised into the run
        return [Score(node.id, type(scorer).name, None, judge, f"scorer {type(scorer).name} failed: {e!r}"[:300])]
    if value is None or isinstance(value, (int, float)):
        return [Score(node.id, type(scorer).name, None if value is None else float(value), judge)]
    return [value] if isinstance(value, Score) else list(value)


async def score_difficulty(client: LLMClient, instruction: str, input: str = "", *, language: str = "en",
                           max_tokens: int = 32, node_id: str, temperature: float = 0.0) -> Score:
    question = instruction if not input.strip() else f"{instruction}\n\n{input}"
    prompt = load_template("difficulty", language).render(instruction=question)
    return await _score(client, prompt, DIFFICULTY, "difficulty", max_tokens, node_id, language, temperature)


async def score_quality(client: LLMClient, instruction: str, input: str, response: str, *,
                        language: str = "en", max_tokens: int = 256, node_id: str, temperature: float = 0.0) -> Score:
    prompt = load_template("quality", language).render(instruction=instruction, input=input or "(none)",
                                                        response=response)
    return await _score(client, prompt, QUALITY, "quality", max_tokens, node_id, language, temperature)


async def _score(client: LLMClient, prompt: str, kind: ReplyKind, metric: str, max_tokens: int, node_id: str,
                 language: str, temperature: float) -> Score:
    try:
        reading = await ask(client, [{"role": "user", "content": prompt}], kind, purpose=metric,
                            temperature=temperature, max_tokens=max_tokens, node_id=node_id, language=language)
    except LLMError as e:
        return Score(node_id, metric, None, client.model, f"scorer failed: {e}"[:300])
    return Score(node_id, metric, reading.value, client.model, reading.describe(280))


# -- the built-in scorers --------------------------------------------------------------------------------
class ComplexityScorer(Scorer):
    """How complex the instruction looks, measured without an LLM (cx_tokens ... cx_index; evolab.text.complexity)."""

    name = "complexity"
    metrics = CX_METRICS
    label = "Complexity index"
    default = True
    drift = ("cx_index",)

    def score(self, node: Node, context: ScoreContext) -> list[Score]:
        return complexity_scores(node) if node.instruction else []


class DifficultyScorer(Scorer):
    """WizardLM's difficulty question: how hard is the instruction, 1-10 (LLM)."""

    name = "difficulty"
    label = "Difficulty (LLM, 1-10)"
    scale = (1.0, 10.0)
    uses_llm = True
    default = True
    estimate_tokens = (60, 4)

    async def score(self, node: Node, context: ScoreContext) -> Score:
        cfg = context.config
        # The judges' cap: a reasoning model spends hidden reasoning tokens out of it before the score.
        return await score_difficulty(context.client, node.instruction, node.input, language=node.language,
                                      max_tokens=cfg.max_tokens_judge, node_id=node.id,
                                      temperature=cfg.temperature_judge)


class QualityScorer(Scorer):
    """AlpaGasus's accuracy rating of the answer, 0-5 (LLM)."""

    name = "quality"
    label = "Quality (LLM, 0-5)"
    scale = (0.0, 5.0)
    uses_llm = True
    needs_response = True
    default = True
    estimate_tokens = (120, None)

    async def score(self, node: Node, context: ScoreContext) -> Score | list[Score]:
        if node.response is None:
            return []
        cfg = context.config
        return await score_quality(context.client, node.instruction, node.input, node.response,
                                   language=node.language, max_tokens=cfg.max_tokens_judge, node_id=node.id,
                                   temperature=cfg.temperature_judge)


# In the order the figures list them: difficulty, quality, then complexity.
register_scorer(DifficultyScorer())
register_scorer(QualityScorer())
register_scorer(ComplexityScorer())
