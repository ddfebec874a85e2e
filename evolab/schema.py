"""The small data model every part of evolab passes around.

Plain dataclasses: the store turns them into rows, the pipeline creates them, the app and the
analyses read them. API keys are never a field of anything here.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

# Node status values.
SEED, PENDING, KEPT, ELIMINATED, FAILED = "seed", "pending", "kept", "eliminated", "failed"
STATUSES = (SEED, PENDING, KEPT, ELIMINATED, FAILED)

# LLM call purposes.
PURPOSES = ("evolve", "respond", "equal", "difficulty", "quality", "judge", "grow", "tag", "optimize", "check")  # grow, tag: seedcraft; optimize: template tuning


@dataclass
class Seed:
    """One seed instruction as read from a file."""

    instruction: str
    input: str = ""
    skill: str | None = None
    difficulty: float | None = None
    language: str | None = None
    # Where a seed came from when not from the person's own file (evolab.seeds.craft): {"kind": "generated",
    # "examples": [...], "model", "endpoint" (host, never a key), "created_at", "proposed": [tags to review]}.
    source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Node:
    """One version of an instruction inside a run."""

    id: str
    run_id: str
    parent_id: str | None
    root_id: str
    round: int
    operation: str
    instruction: str
    input: str = ""
    response: str | None = None
    status: str = PENDING
    rule: str | None = None
    detail: str | None = None
    skill: str | None = None
    seed_difficulty: float | None = None
    language: str = "en"
    template: str | None = None
    template_version: str | None = None
    prompt: str | None = None  # the exact evolving prompt sent
    raw_output: str | None = None  # the evolver's raw reply
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RuleConfig:
    """Switches and thresholds of the eliminator (each rule can be turned off)."""

    no_new_information: bool = True
    # Parent/child similarity (difflib ratio) at or above which a child counts as unchanged.
    near_identical_ratio: float = 0.95
    use_equal_judge: bool = True  # the paper's LLM Equal / Not Equal question
    refusal: bool = True
    refusal_max_words: int = 80  # the paper: a refusal that is also short (< 80 words)
    empty_response: bool = True
    prompt_leak: bool = True
    # the child (its instruction, then its answer) is not in the run's language (evolab/engine/drift_rules.py)
    language_drift: bool = True
    # the child left its parent's subject, by the embedder's calibrated cosine (evolab/engine/drift_rules.py)
    off_topic: bool = True
    duplicate: bool = False  # novelty filter inside a run
    rouge_l_max: float = 0.7  # Self-Instruct keeps an instruction with ROUGE-L <= 0.7
    quality_filter: bool = False  # AlpaGasus filter, off by default
    quality_min: float = 4.5
    off: list[str] = field(default_factory=list)  # ids of other rules switched off (`--rule-off ID`)


@dataclass
class RunConfig:
    """Everything that defines a run. Stored with the run; holds the *name* of the key variable only."""

    model: str = "smollm2"
    base_url: str | None = None  # None: the embedded local model
    api_key_env: str | None = None  # name of the environment variable holding the key
    # The name came from the app: only *_API_KEY, *_KEY, *_TOKEN or EVOLAB_KEY_VARS names are read.
    restrict_key_env: bool = False
    rounds: int = 4
    fanout: int = 1
    # operation -> weight; empty: every registered operation at weight 1 (create_run writes them out)
    operation_weights: dict[str, float] = field(default_factory=dict)
    # "weights": sample by operation_weights; "adaptive": Thompson sampling among the operations with a positive
    # weight on the reward "kept and harder than its parent" (evolab/engine/adaptive.py, `--ops adaptive`)
    operation_sampling: str = "weights"
    # template version per "<language>/<operation>" (e.g. "en/constraints" -> its hash; `--template OP=VERSION`,
    # evolab/engine/templates.py); an operation not named here uses the shipped file
    templates: dict[str, str] = field(default_factory=dict)
    temperature_evolve: float = 0.7
    temperature_respond: float = 0.7
    temperature_judge: float = 0.0
    max_tokens_evolve: int = 512
    max_tokens_respond: int = 1024
    max_tokens_judge: int = 256
    concurrency: int = 8
    rpm: int | None = None  # cap on requests a minute (--rpm); the endpoint's own headers are paced anyway
    tpm: int | None = None  # cap on tokens a minute (--tpm), prompt + max_tokens reserved, corrected by usage
    random_seed: int = 0
    budget_usd: float | None = None
    budget_tokens: int | None = None  # stop before more than this many tokens (prompt + output) are spent
    price: list[float] | None = None  # [input, output] USD per million tokens for this run's model (--price)
    prices_file: str | None = None  # a JSON price table that overrides the built-in one (--prices)
    language: str = "auto"  # auto | en | ko
    name: str | None = None
    # the scorers (evolab.engine.scoring) a run uses; None: the registered defaults (create_run writes them out)
    scorers: list[str] | None = None
    score_seeds: bool = True  # respond to and score round 0 too, as a baseline for drift
    timeout_s: float = 120.0
    max_retries: int = 6
    structured: str = "auto"  # auto | on | off: ask judges and scorers for a JSON schema reply
    # --check-answers: answer kept items with a numeric answer k more times and compare the numbers (checking.py)
    check_answers: bool = False
    check_k: int = 3
    check_temperature: float = 0.7
    rules: RuleConfig = field(default_factory=RuleConfig)
    # plugins whose operations, rules or scorers the run uses: [{"name", "source", "version", "provides"}]
    plugins: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data)
        rules = RuleConfig(**{k: v for k, v in (data.pop("rules", None) or {}).items()
                              if k in {f.name for f in dataclasses.fields(RuleConfig)}})
        known = {f.name for f in dataclasses.fields(cls)}
        if "scorers" not in data and ("score_difficulty" in data or "score_quality" in data):
            # a run stored before scorers were plugins: its two switches name the LLM scorers
            data["scorers"] = ["complexity"] + [name for name in ("difficulty", "quality")
                                                if data.get(f"score_{name}", True)]
        return cls(rules=rules, **{k: v for k, v in data.items() if k in known})


@dataclass
class LLMCall:
    """One request to a model, as stored (never the key)."""

    purpose: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    price_known: bool = True
    cached: bool = False
    reasoning_tokens: int = 0  # hidden reasoning, part of completion_tokens
    error: str | None = None
    run_id: str | None = None
    node_id: str | None = None
    request_hash: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass
class Score:
    """One measurement of a node. `value` None means the judge's reply could not be parsed."""

    node_id: str
    metric: str
    value: float | None
    judge: str  # what produced it: a model name or `heuristic`
    detail: str | None = None
