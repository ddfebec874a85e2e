"""Training-data exports: Alpaca JSON, ShareGPT JSON, OpenAI chat JSONL, and lineage JSONL.

"kept" exports the final data set the paper trains on: the seeds (round 0) with their answers plus
every kept evolved instruction. The lineage format keeps every field of every node for analysis.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from .schema import KEPT, SEED, Node
from .store import Store

FORMATS = ("alpaca", "sharegpt", "openai", "lineage")


def select_nodes(store: Store, run_id: str, *, status: str = "kept", include_seeds: bool = True,
                 rules: Iterable[str] | None = None, min_scores: dict[str, float] | None = None) -> list[Node]:
    """Nodes to export. status: "kept" (kept + answered seeds) or "all"; `rules` keeps only eliminated
    nodes with those rules (plus kept ones when status is all); `min_scores` e.g. {"quality": 4.5}."""
    nodes = store.nodes(run_id)
    if status == "kept":
        nodes = [n for n in nodes if n.status == KEPT or (include_seeds and n.status == SEED)]
        nodes = [n for n in nodes if n.response]
    elif status != "all":
        raise ValueError(f"status must be 'kept' or 'all', not {status!r}")
    if rules:
        wanted = set(rules)
        nodes = [n for n in nodes if n.rule is None or n.rule in wanted]
    if min_scores:
        scores = node_scores(store, run_id)
        nodes = [n for n in nodes
                 if all((scores[n.id].get(m) is not None and scores[n.id][m] >= v) for m, v in min_scores.items())]
    return nodes


def node_scores(store: Store, run_id: str) -> dict[str, dict[str, float | None]]:
    """node id -> {metric: value}; rule verdicts (`rule:*`) left out."""
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    for s in store.scores(run_id):
        if not s.metric.startswith("rule:"):
            out[s.node_id][s.metric] = s.value
    return out


def to_records(store: Store, run_id: str, nodes: list[Node], fmt: str) -> list[dict[str, Any]]:
    if fmt == "alpaca":
        return [{"instruction": n.instruction, "input": n.input or "", "output": n.response or ""} for n in nodes]
    if fmt == "sharegpt":
        return [{"id": n.id, "conversations": [{"from": "human", "value": _prompt(n)},
                                               {"from": "gpt", "value": n.response or ""}]} for n in nodes]
    if fmt == "openai":
        return [{"messages": [{"role": "user", "content": _prompt(n)},
                              {"role": "assistant", "content": n.response or ""}]} for n in nodes]
    if fmt == "lineage":
        run = store.get_run(run_id)
        model = run["config"].model if run else None
        scores = node_scores(store, run_id)
        keys = ["id", "parent_id", "root_id", "round", "operation", "instruction", "input", "response", "status",
                "rule", "detail", "skill", "seed_difficulty", "language", "template", "template_version"]
        return [{**{k: getattr(n, k) for k in keys}, "scores": scores.get(n.id, {}), "model": model,
                 "run_id": run_id} for n in nodes]
    raise ValueError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")


def _prompt(n: Node) -> str:
    return n.instruction if not n.input else f"{n.instruction}\n\n{n.input}"


def dumps(records: list[dict[str, Any]], fmt: str) -> str:
    """Alpaca and ShareGPT are JSON arrays; OpenAI chat and lineage are JSON Lines."""
    if fmt in ("openai", "lineage"):
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


def export_run(store: Store, run_id: str, fmt: str, out: str | Path | None = None, **select: Any) -> str:
    """Write (when `out` is given) and return the export text."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")
    nodes = select_nodes(store, run_id, **select)
    text = dumps(to_records(store, run_id, nodes, fmt), fmt)
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
    return text


def dataset_card(store: Store, run_id: str) -> str:
    """A short Markdown card: model, templates and versions, rounds, random seed, counts, cost."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r}.")
    cfg = run["config"]
    summary = store.run_summary(run_id)
    nodes = store.nodes(run_id)
    templates = sorted({(n.template, n.template_version) for n in nodes if n.template})
    lines = [
        f"# Dataset card: {run['name']}",
        "",
        "Made with evolab (Evol-Instruct, WizardLM 2023).",
        "",
        f"- Run: `{run_id}` ({run['status']}), created {_ts(run['created_at'])}",
        f"- Model: `{cfg.model}` at `{cfg.base_url or 'embedded local model'}`",
        f"- Rounds: {cfg.rounds}, fan-out: {cfg.fanout}, random seed: {cfg.random_seed}, language: {cfg.language}",
        f"- Operation weights: " + ", ".join(f"{k}={v:g}" for k, v in cfg.operation_weights.items()),
        f"- Seeds: {len(run['seeds'])}; nodes: {summary['nodes']} "
        + "(" + ", ".join(f"{k} {v}" for k, v in sorted(summary['by_status'].items())) + ")",
        f"- Eliminated by rule: " + (", ".join(f"{k} {v}" for k, v in sorted(summary['by_rule'].items())) or "none"),
        f"- LLM calls: {summary['calls']} ({summary['cached_calls']} from cache), tokens in/out: "
        f"{summary['prompt_tokens']:,}/{summary['completion_tokens']:,}, cost: ${summary['cost_usd']:.4f}"
        + ("" if summary["price_known"] else " (model price unknown: cost counted as 0)"),
        "- Templates: " + (", ".join(f"`{t}` v{v}" for t, v in templates) or "none"),
    ]
    return "\n".join(lines) + "\n"


def _ts(t: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
