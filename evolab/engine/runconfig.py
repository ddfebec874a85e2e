"""The one builder and validator of a RunConfig, for the CLI (`evolab/cli/main.py`) and the app's Runs page
(`evolab/app/support.py`, `Settings.run_config`).

Every check of a run's choices is made here, once, and a bad choice raises RunConfigError whose message names the
option as the CLI spells it ("--rounds must be at least 1."): the CLI prints it (exit 2) and the app shows the same
words.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evolab.engine.adaptive import parse_ops_option
from evolab.engine.eliminator import rule_ids
from evolab.engine.operations import check_weights, default_weights
from evolab.engine.scoring import parse_scorers
from evolab.llm.client import budget_price_problem
from evolab.llm.local import LOCAL_MODEL_ALIAS, LOCAL_TOKEN_LIMITS
from evolab.llm.pricing import Price, PricesError, parse_price, price_table, resolve_price
from evolab.schema import RuleConfig, RunConfig

STRUCTURED = ("auto", "on", "off")
LANGUAGES = ("auto", "en", "ko")
SAMPLING = ("weights", "adaptive")
_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
_RULE_FIELDS = {f.name for f in dataclasses.fields(RuleConfig)}


class RunConfigError(ValueError):
    """A bad run choice; str() names the option (as the CLI spells it) and says what to do."""


def option(name: str) -> str:
    """The CLI option of a RunConfig field: rounds -> --rounds, random_seed -> --seed."""
    return "--seed" if name == "random_seed" else "--" + name.replace("_", "-")


def endpoint_problem(base_url: str | None, model: str | None) -> str | None:
    """What is wrong with an endpoint and model pair (None: nothing): the URL's scheme, a URL without a model."""
    url = (base_url or "").strip()
    if url and not re.match(r"^https?://", url):
        return (f"--base-url {url!r}: an endpoint URL must start with http:// or https:// (e.g. "
                "https://api.openai.com/v1); leave it out for the embedded local model.")
    if url and not (model or "").strip():
        return "With --base-url (an endpoint URL), name the model too: --model NAME (e.g. gpt-4o-mini)."
    return None


def build_run_config(*, model: str | None = None, base_url: str | None = None, ops: str | None = None,
                     scorers: str | Iterable[str] | None = None, rules: dict[str, Any] | None = None,
                     rule_off: Iterable[str] | None = None, price: str | Iterable[float] | None = None,
                     prices_file: str | None = None, **choices: Any) -> RunConfig:
    """A checked RunConfig from a run's choices.

    - `model`, `base_url`: no base URL is the embedded local model (its name by default, and its short reply limits
      unless `max_tokens_*` are given); a base URL needs a model.
    - `ops`: the `--ops` text (weights, or adaptive); else `operation_weights` (and `operation_sampling`) as a
      dict; else every operation at weight 1.
    - `scorers`: "a,b" or a list, checked against the scorer registry; None: the defaults.
    - `rules`: RuleConfig fields to set (e.g. {"duplicate": True}); `rule_off`: rule ids to switch off.
    - `price`: "IN,OUT" or [in, out] (USD per million tokens); `prices_file`: a JSON price table.
    - any other RunConfig field by name (None leaves the default).

    Raises RunConfigError (a ValueError) naming the option; TypeError for a name that is no RunConfig field."""
    unknown = sorted(set(choices) - _FIELDS)
    if unknown:
        raise TypeError(f"RunConfig has no field {unknown[0]!r}")
    base_url = (base_url or "").strip() or None
    problem = endpoint_problem(base_url, model)
    if problem:
        raise RunConfigError(problem)
    cfg = RunConfig(model=(model or "").strip() or LOCAL_MODEL_ALIAS, base_url=base_url)
    if not base_url:  # the embedded model: short replies so trying the workflow takes minutes
        for key, value in LOCAL_TOKEN_LIMITS.items():
            setattr(cfg, key, value)
    for key, value in choices.items():
        if value is not None:
            setattr(cfg, key, value)

    if ops is not None:
        try:
            cfg.operation_weights, cfg.operation_sampling = parse_ops_option(ops)
        except ValueError as e:
            raise RunConfigError(f"--ops: {e}") from None
    elif cfg.operation_weights:
        try:
            check_weights(cfg.operation_weights)
        except ValueError as e:
            raise RunConfigError(f"--ops: {e}") from None
    else:
        cfg.operation_weights = default_weights()
    if cfg.operation_sampling not in SAMPLING:
        raise RunConfigError(f"--ops: the sampling is one of {', '.join(SAMPLING)}, not {cfg.operation_sampling!r}.")

    for key in ("rounds", "fanout", "max_tokens_evolve", "max_tokens_respond", "max_tokens_judge"):
        _at_least_one(cfg, key)
    if cfg.check_answers and cfg.check_k < 1:
        raise RunConfigError("--check-k must be at least 1.")
    for key, value in (rules or {}).items():
        if key not in _RULE_FIELDS:
            raise TypeError(f"RuleConfig has no field {key!r}")
        setattr(cfg.rules, key, value)
    for rule in rule_off or []:
        known = rule_ids() + ["equal_judge"]
        if rule not in known:
            raise RunConfigError(f"--rule-off {rule}: not a rule; the rules are {', '.join(known)}.")
        if isinstance(getattr(cfg.rules, rule, None), bool):
            setattr(cfg.rules, rule, False)
        elif rule not in cfg.rules.off:
            cfg.rules.off.append(rule)
    if scorers is not None:
        try:
            cfg.scorers = parse_scorers(scorers if isinstance(scorers, str) else ",".join(scorers))
        except ValueError as e:
            raise RunConfigError(f"--scorers: {e}") from None
    if cfg.structured not in STRUCTURED:
        raise RunConfigError(f"--structured is one of {', '.join(STRUCTURED)}, not {cfg.structured!r}.")
    if cfg.language not in LANGUAGES:
        raise RunConfigError(f"--language is one of {', '.join(LANGUAGES)}, not {cfg.language!r}.")
    for key in ("concurrency", "rpm", "tpm"):
        _at_least_one(cfg, key)
    return apply_price_choices(cfg, price=price, prices_file=prices_file)


def apply_price_choices(cfg: RunConfig, *, price: str | Iterable[float] | None = None, prices_file: str | None = None,
                        budget_tokens: int | None = None) -> RunConfig:
    """`--price IN,OUT`, `--prices FILE` and `--budget-tokens N` into `cfg` (a new run's, or a stored one when a
    run resumes), checked: the price file and EVOLAB_PRICES are read now, so their mistakes show before a run."""
    if price is not None and not (isinstance(price, str) and not price.strip()):
        text = price if isinstance(price, str) else ",".join(str(p) for p in price)
        try:
            cfg.price = list(parse_price(text))
        except PricesError as e:
            raise RunConfigError(f"--price {e}") from None
    if prices_file:
        cfg.prices_file = str(Path(prices_file).resolve())
    try:
        price_table(cfg.prices_file)
    except PricesError as e:
        raise RunConfigError(str(e)) from None
    if budget_tokens is not None:
        cfg.budget_tokens = budget_tokens
    _at_least_one(cfg, "budget_tokens")
    return cfg


def price_of(cfg: RunConfig) -> Price | None:
    """The Price a run's calls will be billed at (None: unknown)."""
    return resolve_price(cfg.model if cfg.base_url else LOCAL_MODEL_ALIAS, price=cfg.price, prices_file=cfg.prices_file)


def check_budget_price(cfg: RunConfig) -> None:
    """A dollar budget needs a price: without one the run must not start (RunConfigError says what to do)."""
    problem = budget_price_problem(cfg.model, cfg.budget_usd, price_of(cfg))
    if problem:
        raise RunConfigError(problem)


def _at_least_one(cfg: RunConfig, key: str) -> None:
    value = getattr(cfg, key)
    if value is not None and value < 1:
        raise RunConfigError(f"{option(key)} must be at least 1.")
