"""The dataset card of a run, as huggingface_hub's `DatasetCard` (a README.md with YAML metadata):

- the metadata the Hub reads: languages from the data, the license the user gives, task categories, the size
  category, tags (`evol-instruct`, `synthetic`, `evolab`) and `configs` naming the data file of each format;
- a body that tells the run's story from the store: the seeds, the model and its endpoint (redacted: no key, no
  URL credentials), operations and template versions, rounds, what the eliminator dropped by rule, score
  distributions per round, review agreement and checked answers with their 95% intervals, cost, and how to
  reproduce the run.

The card depends on the store only (no clock, no environment), so the same run gives the same bytes: pushing it
twice changes nothing on the Hub. Text a user or a model wrote (run names, skills) is shown as text (`plain`,
`code`): the card is rendered on the Hub, where Markdown in a run name would be live.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from evolab.analysis import frames as analysis
from evolab.audit import review
from evolab.engine import checking
from evolab.engine.operations import weights_of
from evolab.export.formats import FORMATS, count_selected
from evolab.llm.base import mask_secrets, redact_url
from evolab.store import Store
from evolab.text.markup import code, plain

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import DatasetCard

# Where each format lives in a pushed repository (and what a card written alone names).
FORMAT_FILES = {"alpaca": "data/alpaca.json", "sharegpt": "data/sharegpt.json", "openai": "data/openai.jsonl",
                "lineage": "data/lineage.jsonl"}
FORMAT_TEXT = {"alpaca": "Alpaca JSON (instruction, input, output)",
               "sharegpt": "ShareGPT JSON (conversations of human and gpt turns)",
               "openai": "OpenAI chat JSONL (messages: user, assistant)",
               "lineage": "lineage JSONL (every field of every node: ids, parent, round, operation, status, rule, "
                          "scores)"}
TAGS = ["evol-instruct", "synthetic", "evolab"]
TASK_CATEGORIES = ["text-generation", "question-answering"]
# The Hub's size categories (record counts), smallest first.
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
SCORE_METRICS = ("difficulty", "quality")


def size_category(n: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if n < limit:
            return name
    return "n>1T"


def license_problem(license: str | None) -> str | None:
    """Why `license` cannot go into the card's metadata (None when it can, or when none is given)."""
    if license is None or _LICENSE.fullmatch(license):
        return None
    return (f"--license {license!r}: give a license id as the Hub spells it, in lower case (e.g. apache-2.0, "
            "cc-by-4.0, mit, or other).")


def data_languages(store: Store, run_id: str) -> list[str]:
    """The languages of the run's nodes, most common first (ISO codes only: 'en', 'ko')."""
    counts = Counter(n.language for n in store.nodes(run_id) if n.language and _LANGUAGE_CODE.fullmatch(n.language))
    return [lang for lang, _ in counts.most_common()]


def card_configs(files: dict[str, str]) -> list[dict]:
    """`configs` metadata: one config per format, named after it, its file as the train split; the first is the
    default one the Hub's viewer shows."""
    configs = []
    for i, (fmt, path) in enumerate(files.items()):
        config = {"config_name": fmt, "data_files": [{"split": "train", "path": path}]}
        if i == 0:
            config["default"] = True
        configs.append(config)
    return configs


def dataset_card(store: Store, run_id: str, formats: Iterable[str] = ("alpaca",), *, files: dict[str, str] | None = None,
                 counts: dict[str, int] | None = None, license: str | None = None, repo_id: str | None = None,
                 select: dict | None = None) -> DatasetCard:
    """The run's card for data files of `formats` (at `files[fmt]`, by default the pushed layout FORMAT_FILES);
    `counts` are their record counts (counted from the store when not given, with the same `select` filters as
    the export)."""
    # huggingface_hub: imported where a card is made (its API module takes about half a second to load)
    from huggingface_hub import DatasetCard, DatasetCardData

    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}.")
    problem = license_problem(license)
    if problem:
        raise ValueError(problem)
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    files = {f: (files or {}).get(f, FORMAT_FILES[f]) for f in formats}
    select = select or {}
    counts = {f: (counts or {}).get(f, None) for f in formats}
    if any(n is None for n in counts.values()):  # every format holds the same selected nodes: one pass counts them
        selected = count_selected(store, run_id, **select)
        counts = {f: selected if n is None else n for f, n in counts.items()}
    largest = max(counts.values(), default=0)
    data = DatasetCardData(
        language=data_languages(store, run_id) or None,
        license=license,
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(largest)],
        tags=list(TAGS),
        pretty_name=run["name"] or run_id,
        configs=card_configs(files),
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(store, run_id, files, counts, license, repo_id)}")


def write_card(card: DatasetCard, path: str | Path) -> Path:
    """Write the card (README.md text) beside a temporary file renamed at the end."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(str(card), encoding="utf-8", newline="\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# -- the body ----------------------------------------------------------------------------------------------------
def card_body(store: Store, run_id: str, files: dict[str, str], counts: dict[str, int], license: str | None,
              repo_id: str | None = None) -> str:
    run = store.get_run(run_id)
    cfg = run["config"]
    overview = analysis.run_overview(store, run_id)
    nodes = analysis.nodes_frame(store, run_id, fill_complexity=False)
    title = plain(run["name"] or run_id)
    out = [f"# Dataset card: {title}", "",
           "Instruction data evolved with Evol-Instruct (WizardLM, Xu et al. 2023, arXiv 2304.12244) by evolab: an LLM rewrote seed instructions round after round into harder (in-depth) or rarer "
           "(in-breadth) ones, answered each, and an eliminator dropped the failed rewrites, recording why. "
           "Everything below is read from the run's store.", ""]

    out += ["## Files", "", "| config | file | format | records |", "|---|---|---|---|"]
    out += [f"| {code(f)} | {code(path)} | {FORMAT_TEXT[f]} | {counts.get(f, 0):,} |" for f, path in files.items()]
    if repo_id:
        out += ["", "```python", "from datasets import load_dataset", "",
                f"data = load_dataset({repo_id!r}, {next(iter(files), 'alpaca')!r}, split=\"train\")", "```"]
    out += ["", f"License: {code(license) if license else 'not stated by the person who published the data'}. "
            f"The answers were written by {code(cfg.model)}: its provider's terms apply to them too.", ""]

    out += ["## Seeds", ""] + _seeds_section(run, nodes) + [""]
    out += ["## Model and endpoint", "",
            f"- Model: {code(cfg.model)}",
            f"- Endpoint: {code(redact_url(cfg.base_url) or 'the embedded local model (SmolLM2-135M, llama.cpp)')}",
            f"- Temperatures: evolve {cfg.temperature_evolve:g}, respond {cfg.temperature_respond:g}, judge "
            f"{cfg.temperature_judge:g}; scorers: " + (", ".join(cfg.scorers) if cfg.scorers is not None
                                                        else "the defaults (complexity, difficulty, quality)"),
            "- Plugins: " + (", ".join(plain(f"{p['name']} {p.get('version') or ''}".strip()) for p in cfg.plugins)
                             or "none"), ""]

    out += ["## Evolution", ""] + _evolution_section(cfg, nodes, overview) + [""]
    out += ["## What the eliminator dropped", ""] + _eliminations_section(nodes, overview) + [""]
    out += ["## Scores per round", ""] + _scores_section(nodes) + [""]
    out += ["## Review agreement", ""] + _agreement_section(store, run_id) + [""]
    out += ["## Checked answers", ""] + _checked_section(store, run_id) + [""]
    out += ["## Selection", ""] + _selection_section(store, run_id) + [""]
    out += ["## Cost", ""] + _cost_section(overview) + [""]
    out += ["## How to reproduce", ""] + _reproduce_section(run, nodes) + [""]
    if overview.get("error"):
        out += [f"Run error: {code(mask_secrets(overview['error']))}", ""]
    return "\n".join(out)


def _seeds_section(run: dict, nodes: pd.DataFrame) -> list[str]:
    seeds = run["seeds"]
    skills = Counter(s.skill for s in seeds if s.skill)
    seed_nodes = nodes[nodes["round"] == 0] if not nodes.empty else nodes
    languages = Counter(seed_nodes["language"].dropna()) if not seed_nodes.empty else Counter(
        s.language for s in seeds if s.language)
    lines = [f"- {len(seeds)} seed instructions"
             + (f" from the seed set {code(run['seed_set'])}" if run.get("seed_set") else " from a seed file")]
    lines.append("- Languages: " + (", ".join(f"{code(k)} {v}" for k, v in languages.most_common()) or "not detected"))
    lines.append("- Skills: " + (", ".join(f"{plain(k)} {v}" for k, v in skills.most_common(12)) or "not tagged")
                 + (f" and {len(skills) - 12} more" if len(skills) > 12 else ""))
    return lines


def _evolution_section(cfg, nodes: pd.DataFrame, overview: dict) -> list[str]:
    weights = weights_of(cfg.operation_weights)
    if cfg.operation_sampling == "adaptive":
        ops = "adaptive (Thompson sampling on kept and harder) among " + ", ".join(k for k, v in weights.items() if v > 0)
    else:
        ops = "sampled by weight: " + ", ".join(f"{k} {v:g}" for k, v in weights.items())
    lines = [f"- {cfg.rounds} rounds, fan-out {cfg.fanout} (operations tried per instruction and round), random "
             f"seed {cfg.random_seed}, language {cfg.language}", f"- Operations {ops}"]
    evolved = nodes[nodes["round"] > 0] if not nodes.empty else nodes
    templates = sorted({(t, v) for t, v in zip(evolved.get("template", []), evolved.get("template_version", []))
                        if isinstance(t, str) and t})
    lines.append("- Templates: " + (", ".join(f"{code(t)} version {plain(v)}" for t, v in templates)
                                    or "the shipped ones"))
    if not evolved.empty:
        lines += ["", "| round | operation | tried | kept | eliminated | failed |", "|---|---|---|---|---|---|"]
        grouped = evolved.groupby(["round", "operation"])["status"]
        for (rnd, op), statuses in grouped:
            c = statuses.value_counts()
            lines.append(f"| {int(rnd)} | {code(op)} | {len(statuses)} | {int(c.get('kept', 0))} | "
                         f"{int(c.get('eliminated', 0))} | {int(c.get('failed', 0))} |")
    kept = overview["kept_per_round"]
    if kept:
        lines += ["", "Kept pool per round: " + ", ".join(f"round {k}: {v}" for k, v in sorted(kept.items()))]
    return lines


def _eliminations_section(nodes: pd.DataFrame, overview: dict) -> list[str]:
    by_rule = overview["by_rule"]
    if not by_rule:
        return ["Nothing was eliminated."]
    lines = ["Rules run cheapest first; a child is dropped by the first rule it fails.", "",
             "| rule | dropped | share of evolved |", "|---|---|---|"]
    evolved = int((nodes["round"] > 0).sum()) if not nodes.empty else 0
    for rule, n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {code(rule)} | {n} | {n / evolved:.0%} |" if evolved else f"| {code(rule)} | {n} | |")
    return lines


def _scores_section(nodes: pd.DataFrame) -> list[str]:
    metrics = [m for m in SCORE_METRICS if m in nodes and nodes[m].notna().any()] if not nodes.empty else []
    if not metrics:
        return ["No scores yet."]
    lines = ["Seeds (round 0) and kept nodes; the mean with its 95% confidence interval, the median and the range.",
             ""]
    pool = nodes[nodes["status"].isin(["seed", "kept"])]
    per_round = analysis.round_frame(pool, metrics=metrics)
    for metric in metrics:
        lines += [f"**{metric}**", "", "| round | n | mean (95% CI) | median | min-max |", "|---|---|---|---|---|"]
        for _, row in per_round.iterrows():
            values = pool.loc[pool["round"] == row["round"], metric].dropna()
            if values.empty:
                continue
            ci = (f" ({row[f'{metric}_lo']:.2f}-{row[f'{metric}_hi']:.2f})"
                  if pd.notna(row.get(f"{metric}_lo")) and len(values) >= analysis.MIN_N_FOR_CI else "")
            lines.append(f"| {int(row['round'])} | {len(values)} | {values.mean():.2f}{ci} | {values.median():.2f} | "
                         f"{values.min():.2f}-{values.max():.2f} |")
        lines.append("")
    return lines[:-1]


def _agreement_section(store: Store, run_id: str) -> list[str]:
    frame = review.agreement(store, [run_id])
    lines = [review.agreement_note(frame)]  # evolab's own sentence, no user text
    if frame.empty:
        return lines
    lines += ["", "| check | reviewed | agreed | share (95% Wilson interval) |", "|---|---|---|---|"]
    for row in frame.itertuples(index=False):
        lines.append(f"| {code(row.check)} | {int(row.n)} | {int(row.agree)} | {row.share:.0%} "
                     f"({row.low:.0%}-{row.high:.0%}){' too few to say' if row.too_small else ''} |")
    return lines


def _checked_section(store: Store, run_id: str) -> list[str]:
    shares = checking.consistent_share(store, [run_id])
    if shares is None or shares.empty or int(shares["checked"].sum()) == 0:
        return ["No answers were checked (`python -m evolab check` answers items with a numeric answer k more "
                "times and compares the numbers)."]
    frame = checking.share_with_intervals(shares)
    checked, consistent = int(frame["checked"].sum()), int(frame["consistent"].sum())
    lines = [f"{consistent} of {checked} checked answers were consistent ({consistent / checked:.0%}): the same final "
             f"number came back in most of k new samples (within {checking.TOLERANCE:.0%}).", "",
             "| round | checked | consistent | share (95% Wilson interval) | not checkable |", "|---|---|---|---|---|"]
    for row in frame.itertuples(index=False):
        share = f"{row.share:.0%} ({row.low:.0%}-{row.high:.0%})" if row.checked else ""
        lines.append(f"| {int(row.round)} | {int(row.checked)} | {int(row.consistent)} | {share} | "
                     f"{int(row.not_checkable)} |")
    return lines


def _selection_section(store: Store, run_id: str) -> list[str]:
    """How the latest `evolab select` (or the Export page's panel) over this run chose its set (issue 27)."""
    selections = store.selections(run_id)
    if not selections:
        return ["No selection was made: the files hold every kept node (`python -m evolab select` chooses the best "
                "N, skipping near-duplicates, as Deita does)."]
    latest = selections[0]
    params = latest["params"]
    skipped = Counter(str(item["reason"]).split(":")[0] for item in store.selection_items(latest["id"])
                      if not item["chosen"])
    runs = ", ".join(code(r) for r in latest["run_ids"])
    threshold = latest["threshold"]
    lines = [f"The latest selection (of {len(selections)}) chose {latest['n_chosen']:,} of the {latest['n_requested']:,} "
             f"asked for from run(s) {runs}: kept nodes sorted by {code('*'.join(params.get('score', [])))} and taken "
             "in that order, skipping any whose cosine with one already taken is at or above "
             + (f"{threshold:.4f}" if threshold is not None else "the embedder's threshold")
             + (f" ({code(latest['embedder'])})" if latest.get("embedder") else "") + " (Deita, Liu et al. 2024).",
             f"- Cap: at most {params['cap']} per {plain(params['cap_by'])}" if params.get("cap_by")
             else "- Cap: none per lineage or skill",
             "- Skipped: " + (", ".join(f"{plain(reason)} {count:,}" for reason, count in skipped.most_common())
                              or "none")]
    return lines


def _cost_section(overview: dict) -> list[str]:
    return [f"- LLM calls: {overview['calls']:,} ({overview['cached_calls']:,} from the cache, "
            f"{overview['failed_calls']:,} failed)",
            f"- Tokens: {overview['prompt_tokens']:,} in, {overview['completion_tokens']:,} out",
            f"- Cost: ${overview['cost_usd']:.4f}" + ("" if overview["price_known"]
                                                      else " (the model's price is unknown: counted as 0)")]


def _reproduce_section(run: dict, nodes: pd.DataFrame) -> list[str]:
    cfg = run["config"]
    seeds = f"--seed-set {run['seed_set']}" if run.get("seed_set") else "SEEDS.jsonl"
    parts = [f"python -m evolab run {seeds}", f"--rounds {cfg.rounds}", f"--fanout {cfg.fanout}",
             f"--seed {cfg.random_seed}", f"--language {cfg.language}"]
    if cfg.base_url:
        parts += [f"--base-url {redact_url(cfg.base_url)}", f"--model {cfg.model}", "--api-key-env YOUR_KEY_VARIABLE"]
    weights = weights_of(cfg.operation_weights)
    if cfg.operation_weights:
        parts.append("--ops " + ",".join(f"{k}={v:g}" for k, v in weights.items()))
    if cfg.scorers is not None:
        parts.append("--scorers " + ",".join(cfg.scorers))
    for op, version in sorted((cfg.templates or {}).items()):
        parts.append(f"--template {op}={version}")
    command = " \\\n    ".join(parts)
    return ["With evolab and the same seeds (the seed set named above, or the round-0 instructions of the "
            "lineage file), the same model and the same random seed:", "", "```sh", command, "```", "",
            "Models sample: a rerun makes a run of the same shape, not the same text. The lineage file keeps "
            "every node with its parent, operation, rule and scores."]
