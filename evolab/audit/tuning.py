"""Template tuning, after Auto Evol-Instruct (Zeng et al., 2024, arXiv:2406.00770): an optimizer model reads the
children an operation's template produced that the elimination rules threw away, and rewrites the template; each
candidate is tried for one round on a small dev set of the run's seeds, and the one with the lowest failure rate
wins. Here a person drives it and decides what to adopt.

A session, every step stored as it happens (so a crash loses nothing and `resume_session` goes on):
1. collect the operation's eliminated children of the run (rule, detail, parent instruction, raw output);
2. ask the optimizer for k revised templates (structured output, `reading.TEMPLATE_CANDIDATES`); a candidate
   that drops or adds a {placeholder} is rejected with the reason;
3. run the current template (candidate 0, the baseline) and every valid candidate for one round on the same dev
   seeds: a fresh run each in the same store, on the run's endpoint and settings, through the real engine, so
   the eliminations are the same rules;
4. measure each: failure rate = eliminated / (kept + eliminated) children (a failed call or an unreadable judge
   says nothing about the template and is not counted), and mean difficulty gain = child minus parent
   difficulty over the kept children where both were scored;
5. the person adopts one (`adopt`): it becomes a stored template version whose parent is the current one.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable

from evolab.audit.judge import Item, Side, _normalise, judge_items, position_swap_counts, summarize_judgments
from evolab.audit.review import wilson_interval
from evolab.engine import pipeline
from evolab.engine.operations import Template, get_operation, load_template
from evolab.engine.templates import (
    TemplateVersion,
    check_placeholders,
    find_version,
    resolve,
    save_version,
    shipped_version,
    unified_diff,
)
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient, make_backend
from evolab.llm.openai_backend import with_endpoint
from evolab.schema import ELIMINATED, KEPT, Node, RunConfig, Seed
from evolab.store import Store, text_hash
from evolab.text.language import detect_language
from evolab.text.reading import TEMPLATE_CANDIDATES, ask

DEFAULT_CANDIDATES = 4
DEFAULT_DEV_SEEDS = 20
MAX_FAILURES_SHOWN = 12  # failures put in the optimizer's prompt, spread over the rules
LANGUAGE_NAMES = {"en": "English", "ko": "Korean (한국어)"}
BASELINE, CANDIDATE, REJECTED, MEASURED = "baseline", "candidate", "rejected", "measured"
Progress = Callable[[dict[str, Any]], None]


class TuningError(Exception):
    """A session cannot go on; the message says why and what to do."""


# -- 1. failures --------------------------------------------------------------------------------------------
def collect_failures(store: Store, run_id: str, operation: str, language: str) -> list[dict[str, Any]]:
    """The operation's children in `language` that a rule eliminated (a manual discard is a person's choice,
    not the template's failure), with their parent's instruction and the model's raw output."""
    nodes = store.nodes(run_id)
    by_id = {n.id: n for n in nodes}
    out = []
    for n in nodes:
        if n.operation != operation or n.status != ELIMINATED or n.rule in (None, "manual"):
            continue
        if (n.language or "en") != language:
            continue
        parent = by_id.get(n.parent_id or "")
        out.append({"node_id": n.id, "rule": n.rule, "detail": n.detail or "",
                    "parent": parent.instruction if parent else "", "output": n.raw_output or n.instruction,
                    "template_version": n.template_version})
    return out


def spread_over_rules(failures: list[dict[str, Any]], limit: int = MAX_FAILURES_SHOWN) -> list[dict[str, Any]]:
    """Up to `limit` failures taken in turn from each rule, so one frequent rule does not hide the others."""
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        by_rule.setdefault(f["rule"], []).append(f)
    queues = sorted(by_rule.values(), key=len, reverse=True)
    picked: list[dict[str, Any]] = []
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return picked


def tuning_language(store: Store, run_id: str, operation: str, language: str | None = None) -> str:
    """The language to tune: the one asked for, else the one most of the operation's failures are in, else the
    run's language, else that of most of its seeds."""
    if language:
        if language not in LANGUAGE_NAMES:
            raise TuningError(f"Language {language!r}: choose one of {', '.join(LANGUAGE_NAMES)}.")
        return language
    counts = Counter(n.language or "en" for n in store.nodes(run_id, ELIMINATED) if n.operation == operation)
    if counts:
        return counts.most_common(1)[0][0]
    run = store.get_run(run_id)
    if run["config"].language in LANGUAGE_NAMES:
        return run["config"].language
    seeds = Counter(s.language or detect_language(s.instruction) for s in run["seeds"])
    return seeds.most_common(1)[0][0] if seeds else "en"


def current_version(store: Store, config: RunConfig, operation: str, language: str) -> TemplateVersion:
    """The template version the run used for (operation, language): the one its config names, else the shipped."""
    named = (config.templates or {}).get(f"{language}/{operation}")
    if named:
        found = find_version(store, operation, language, named)
        if found is None:
            raise TuningError(f"The run used {language}/{operation} version {named}, which the store no longer has.")
        return found
    return shipped_version(operation, language)


# -- 2. the optimizer ---------------------------------------------------------------------------------------
def optimizer_messages(current: TemplateVersion, failures: list[dict[str, Any]], count: int) -> list[dict[str, str]]:
    """The optimizer's prompt (evolab/prompts/<lang>/optimize_template.txt) with the current template and the
    failures (outputs cut to 600 characters)."""
    template = load_template("optimize_template", current.language)
    shown = []
    for i, f in enumerate(spread_over_rules(failures), 1):
        shown.append(f"Failure {i} - rule {f['rule']}: {f['detail']}\n"
                     f"Instruction given: {f['parent'][:400]}\n"
                     f"Model's reply: {f['output'][:600]}")
    op = get_operation(current.operation)
    placeholders = ", ".join("{" + p + "}" for p in sorted(current.template().fields))
    prompt = template.render(operation=op.name, summary=op.summary, placeholders=placeholders, template=current.text,
                             failures="\n\n".join(shown), count=str(count),
                             language_name=LANGUAGE_NAMES.get(current.language, current.language))
    return [{"role": "user", "content": prompt}]


def screen_candidates(current: TemplateVersion, proposed: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Each proposed template with its status: `candidate`, or `rejected` with the reason (a placeholder dropped
    or added, identical to the current one, or a repeat of an earlier candidate)."""
    seen = {current.version}
    out = []
    for p in proposed:
        text = p["template"]
        reason = check_placeholders(current.template(), text)
        version = Template(current.key, text).version
        if reason is None and version in seen:
            reason = "the same text as an earlier candidate"
        seen.add(version)
        out.append({"hash": version, "text": text, "rationale": p.get("rationale", ""),
                    "status": REJECTED if reason else CANDIDATE, "reason": reason})
    return out


# -- 3. dev runs ---------------------------------------------------------------------------------------------
def dev_seeds(seeds: list[Seed], config: RunConfig, language: str, n: int) -> list[Seed]:
    """A fixed sample of up to `n` of the run's seeds in `language` (every candidate gets the same ones)."""
    pool = [s for s in seeds if pipeline.run_language(config, s) == language]
    if len(pool) <= n:
        return pool
    rng = random.Random(f"{config.random_seed}|dev-seeds")
    return [pool[i] for i in sorted(rng.sample(range(len(pool)), n))]


def dev_config(config: RunConfig, operation: str, language: str, version: str, name: str) -> RunConfig:
    """The run's settings (endpoint, rules, scoring) for one round of `operation` alone with this template."""
    data = config.to_dict()
    data.update(rounds=1, fanout=1, operation_weights={operation: 1.0}, language=language, name=name,
                templates={**(config.templates or {}), f"{language}/{operation}": version})
    if "operation_sampling" in data:
        data["operation_sampling"] = "weights"
    return RunConfig.from_dict(data)


def measure(store: Store, run_id: str) -> dict[str, Any]:
    """Failure rate and mean difficulty gain of a dev run's children (see the module docstring)."""
    nodes = store.nodes(run_id)
    children = [n for n in nodes if n.parent_id is not None]
    tried = [n for n in children if n.status in (KEPT, ELIMINATED)]
    failed = [n for n in tried if n.status == ELIMINATED]
    difficulty = {s.node_id: s.value for s in store.scores(run_id=run_id) if s.metric == "difficulty"}
    gains = [difficulty[n.id] - difficulty[n.parent_id] for n in tried if n.status == KEPT
             and difficulty.get(n.id) is not None and difficulty.get(n.parent_id or "") is not None]
    low, high = wilson_interval(len(failed), len(tried)) if tried else (None, None)
    return {"tried": len(tried), "kept": len(tried) - len(failed), "failed": len(failed),
            "failure_rate": len(failed) / len(tried) if tried else None, "failure_low": low, "failure_high": high,
            "by_rule": dict(Counter(n.rule for n in failed)), "not_counted": len(children) - len(tried),
            "difficulty_gain": sum(gains) / len(gains) if gains else None, "gain_n": len(gains)}


# -- the session -------------------------------------------------------------------------------------------
def start_session(store: Store, run_id: str, operation: str, *, candidates: int = DEFAULT_CANDIDATES,
                  dev_seeds: int = DEFAULT_DEV_SEEDS, language: str | None = None,
                  optimizer: dict[str, Any] | None = None) -> str:
    """Check the request and store a new session; `run_session` does the work. `optimizer`: base_url, model,
    api_key_env of the optimizer model (default: the run's own endpoint and model)."""
    run = store.get_run(run_id)
    if run is None:
        raise TuningError(f"No run {run_id!r} in {store.path}.")
    try:
        get_operation(operation)
    except ValueError as e:
        raise TuningError(str(e)) from None
    if candidates < 1 or dev_seeds < 1:
        raise TuningError("--candidates and --dev-seeds must be at least 1.")
    language = tuning_language(store, run_id, operation, language)
    current = current_version(store, run["config"], operation, language)
    if not [s for s in run["seeds"] if pipeline.run_language(run["config"], s) == language]:
        raise TuningError(f"Run {run_id} has no {language} seeds to try the candidates on; pick --language.")
    session_id = time.strftime("tune-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    store.create_tuning_session({
        "id": session_id, "run_id": run_id, "operation": operation, "language": language,
        "parent_version": current.version, "status": "started",
        "settings": {"candidates": candidates, "dev_seeds": dev_seeds,
                     "optimizer": {k: v for k, v in (optimizer or {}).items() if k in ("base_url", "model",
                                                                                         "api_key_env") and v}}})
    return session_id


def _optimizer_config(run_config: RunConfig, settings: dict[str, Any]) -> RunConfig:
    """The run's config with the session's optimizer endpoint; another server never gets the run's key variable."""
    optimizer = settings.get("optimizer") or {}
    config, _ = with_endpoint(run_config, base_url=optimizer.get("base_url"), model=optimizer.get("model"),
                              api_key_env=optimizer.get("api_key_env"))
    return config


async def _ask_optimizer(store: Store, session: dict[str, Any], current: TemplateVersion,
                         config: RunConfig) -> list[dict[str, str]]:
    count = session["settings"]["candidates"]
    client = LLMClient(make_backend(config), store, concurrency=1, structured=config.structured,
                       budget_usd=config.budget_usd, budget_tokens=config.budget_tokens, price=config.price,
                       prices_file=config.prices_file)
    try:
        reading = await ask(client, optimizer_messages(current, session["failures"], count), TEMPLATE_CANDIDATES,
                            purpose="optimize", temperature=0.7, max_tokens=max(2048, 700 * count),
                            language=current.language)
    except LLMError as e:
        raise TuningError(f"The optimizer's endpoint failed: {e} Fix the endpoint or name another model with "
                          f"--base-url/--model (a small context window cannot hold the failures and {count} "
                          f"templates), then go on with `python -m evolab tune --db {store.path} --resume "
                          f"{session['id']}`.") from None
    finally:
        await client.aclose()
    # The optimizer's calls belong to no run: their cost is kept with the session.
    session["settings"]["optimizer_cost"] = {"calls": client.calls_made, "tokens": client.spent_tokens,
                                             "usd": round(client.spent_usd, 6)}
    store.update_tuning_session(session["id"], optimizer_reply=reading.reply, settings=session["settings"],
                                detail=f"optimizer: {client.calls_made} call(s), {client.spent_tokens:,} tokens, "
                                       f"${client.spent_usd:.4f}")
    if not reading.readable:
        raise TuningError(f"The optimizer's reply could not be read as templates (asked twice): "
                          f"{' '.join(reading.reply.split())[:200]!r}. Try another --model for the optimizer.")
    return reading.value[:count]


async def run_session(store: Store, session_id: str, *, progress: Progress | None = None,
                      stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Do (or go on with) a session: each step already stored is skipped, a dev run cut short is resumed.
    Returns `summary(store, session_id)`; raises TuningError (also stored as the session's detail)."""
    session = store.tuning_session(session_id)
    if session is None:
        raise TuningError(f"No tuning session {session_id!r} in {store.path}.")
    report = progress or (lambda p: None)
    try:
        return await _run_session(store, session, report, stop_event)
    except TuningError as e:
        store.update_tuning_session(session_id, status="failed", detail=str(e))
        raise
    except Exception as e:
        store.update_tuning_session(session_id, status="failed", detail=f"{type(e).__name__}: {e}")
        raise


async def _run_session(store: Store, session: dict[str, Any], report: Progress,
                       stop_event: threading.Event | None) -> dict[str, Any]:
    sid, op, language = session["id"], session["operation"], session["language"]
    run = store.get_run(session["run_id"])
    if run is None:
        raise TuningError(f"The session's run {session['run_id']} is no longer in {store.path}.")
    config: RunConfig = run["config"]
    current = find_version(store, op, language, session["parent_version"])
    if current is None:
        raise TuningError(f"The current {language}/{op} template {session['parent_version']} is gone.")
    if not session["failures"]:
        failures = collect_failures(store, session["run_id"], op, language)
        if not failures:
            raise TuningError(f"Run {session['run_id']} has no eliminated {language} children of {op}: nothing "
                              "for the optimizer to learn from.")
        store.update_tuning_session(sid, status="collected", failures=failures,
                                    detail=f"{len(failures)} failed children")
        session["failures"] = failures
        report({"stage": "collected", "failures": len(failures)})
    if not store.tuning_candidates(sid):
        report({"stage": "optimizer"})
        screened = screen_candidates(current, await _ask_optimizer(store, session, current,
                                                                   _optimizer_config(config, session["settings"])))
        store.add_tuning_candidate({"session_id": sid, "idx": 0, "hash": current.version, "text": current.text,
                                    "rationale": "the current template", "status": BASELINE})
        for i, c in enumerate(screened, 1):
            store.add_tuning_candidate({"session_id": sid, "idx": i, **c})
        valid = sum(c["status"] == CANDIDATE for c in screened)
        cost = store.tuning_session(sid)["detail"]
        store.update_tuning_session(sid, status="proposed", detail=f"{valid} of {len(screened)} candidates keep "
                                                                    f"the placeholders; {cost}")
        report({"stage": "proposed", "valid": valid, "proposed": len(screened)})
    seeds = dev_seeds(run["seeds"], config, language, session["settings"]["dev_seeds"])
    todo = [c for c in store.tuning_candidates(sid) if c["status"] in (BASELINE, CANDIDATE, MEASURED)]
    for n, cand in enumerate(todo, 1):
        if cand["measures"] is not None:
            continue
        run_id = cand["dev_run_id"]
        if run_id is None:
            label = "current" if cand["idx"] == 0 else f"candidate {cand['idx']}"
            run_id = pipeline.create_run(store, seeds, dev_config(config, op, language, cand["hash"],
                                                                  f"tuning {sid} {label}"))
            store.update_tuning_candidate(sid, cand["idx"], dev_run_id=run_id)
        store.update_tuning_session(sid, status="measuring", detail=f"dev run {n} of {len(todo)} ({run_id})")
        report({"stage": "measuring", "candidate": cand["idx"], "n": n, "of": len(todo), "run_id": run_id})
        status = await pipeline.arun(store, run_id, stop_event=stop_event)
        if status != "finished":
            raise TuningError(f"Dev run {run_id} ended {status}: {store.get_run(run_id)['error'] or ''} Go on with "
                              f"`python -m evolab tune --db {store.path} --resume {sid}`.")
        store.update_tuning_candidate(sid, cand["idx"], measures=measure(store, run_id),
                                      status=MEASURED if cand["idx"] else BASELINE)
    best = best_candidate(store.tuning_candidates(sid))
    store.update_tuning_session(sid, status="measured", detail=(f"best: candidate {best}" if best is not None
                                                                else "no candidate beat the current template"))
    report({"stage": "measured", "best": best})
    return summary(store, sid)


def start_and_run(store: Store, run_id: str, operation: str, **kwargs: Any) -> dict[str, Any]:
    """`start_session` then `run_session`, synchronously (notebooks, the CLI)."""
    progress, stop_event = kwargs.pop("progress", None), kwargs.pop("stop_event", None)
    sid = start_session(store, run_id, operation, **kwargs)
    return asyncio.run(run_session(store, sid, progress=progress, stop_event=stop_event))


# -- results ------------------------------------------------------------------------------------------------
def best_candidate(candidates: list[dict[str, Any]]) -> int | None:
    """The measured candidate (never the baseline) with the lowest failure rate, then the highest difficulty
    gain; None unless it fails less than the current template, or as often with a higher gain."""
    measured = [c for c in candidates if c["measures"] and c["measures"]["failure_rate"] is not None]
    base = next((c for c in measured if c["idx"] == 0), None)

    def rank(c: dict[str, Any]) -> tuple[float, float]:
        gain = c["measures"]["difficulty_gain"]
        return (c["measures"]["failure_rate"], -(gain if gain is not None else float("-inf")))

    others = sorted((c for c in measured if c["idx"] > 0), key=lambda c: (rank(c), c["idx"]))
    if not others:
        return None
    if base is not None and rank(others[0]) >= rank(base):
        return None
    return others[0]["idx"]


def overlaps_baseline(candidates: list[dict[str, Any]], best: int | None) -> bool:
    """The best candidate's 95% interval of the failure rate overlaps the current template's."""
    by_idx = {c["idx"]: c["measures"] for c in candidates if c["measures"]}
    if best is None or 0 not in by_idx or best not in by_idx or by_idx[0].get("failure_low") is None:
        return False
    return by_idx[best]["failure_high"] >= by_idx[0]["failure_low"]


def summary(store: Store, session_id: str) -> dict[str, Any]:
    """The session, its candidates with measures and diffs against the current template, and the best one."""
    session = store.tuning_session(session_id)
    if session is None:
        raise TuningError(f"No tuning session {session_id!r} in {store.path}.")
    candidates = store.tuning_candidates(session_id)
    current = next((c for c in candidates if c["idx"] == 0), None)
    for c in candidates:
        c["diff"] = "" if current is None or c["idx"] == 0 else unified_diff(
            current["text"], c["text"], f"current ({current['hash']})", f"candidate {c['idx']} ({c['hash']})")
    return {"session": session, "candidates": candidates, "best": best_candidate(candidates)}


def candidates_table(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per candidate for a table: idx, version, status, tried, failure rate, eliminations by rule,
    difficulty gain, why rejected."""
    rows = []
    for c in candidates:
        m = c["measures"] or {}
        rows.append({"candidate": c["idx"], "version": c["hash"], "status": c["status"],
                     "tried": m.get("tried"), "failed": m.get("failed"), "failure_rate": m.get("failure_rate"),
                     "failure_95_low": m.get("failure_low"), "failure_95_high": m.get("failure_high"),
                     "by_rule": ", ".join(f"{k} {v}" for k, v in sorted((m.get("by_rule") or {}).items())),
                     "difficulty_gain": m.get("difficulty_gain"), "gain_n": m.get("gain_n"),
                     "not_counted": m.get("not_counted"), "rejected_because": c["reason"] or "",
                     "adopted_as": c["adopted_as"] or "", "dev_run": c["dev_run_id"] or ""})
    return rows


def format_summary(result: dict[str, Any]) -> str:
    """The table and each candidate's diff, as plain text for the terminal."""
    s = result["session"]
    cost = s["settings"].get("optimizer_cost")
    lines = [f"tuning session {s['id']}: {s['language']}/{s['operation']} of run {s['run_id']} [{s['status']}] "
             f"{s['detail'] or ''}"
             + (f"; optimizer {cost['calls']} call(s), {cost['tokens']:,} tokens, ${cost['usd']:.4f}" if cost else ""),
             f"{'#':>2}  {'version':10}  {'status':9}  {'tried':>5}  {'failed':>6}  {'fail %':>6}  {'95% CI':>9}  "
             f"{'Δdiff':>6}  eliminated by / note"]
    for r in candidates_table(result["candidates"]):
        rate = "" if r["failure_rate"] is None else f"{r['failure_rate']:.0%}"
        ci = "" if r["failure_95_low"] is None else f"{r['failure_95_low']:.0%}-{r['failure_95_high']:.0%}"
        gain = "" if r["difficulty_gain"] is None else f"{r['difficulty_gain']:+.2f}"
        note = r["rejected_because"] or r["by_rule"] or ""
        if r["candidate"] == 0:
            note = ("current template; " + note).rstrip("; ")
        if r["candidate"] == result["best"]:
            note = ("BEST; " + note).rstrip("; ")
        lines.append(f"{r['candidate']:>2}  {r['version']:10}  {r['status']:9}  {r['tried'] if r['tried'] is not None else '':>5}  "
                     f"{r['failed'] if r['failed'] is not None else '':>6}  {rate:>6}  {ci:>9}  {gain:>6}  {note}")
    lines.append("fail % = eliminated / (kept + eliminated) children of one round on the dev seeds (95% Wilson "
                 "interval); Δdiff = mean difficulty change parent -> child over kept children with both scored.")
    overlap = overlaps_baseline(result["candidates"], result["best"])
    if overlap:
        lines.append(f"Candidate {result['best']}'s interval overlaps the current template's: with this many dev "
                     "children the difference may be chance (raise --dev-seeds).")
    for c in result["candidates"]:
        if c["idx"] > 0:
            lines += ["", f"--- candidate {c['idx']}: {c['rationale'] or ''}".rstrip(), c["diff"] or "(no change)"]
    return "\n".join(lines)


def adopt(store: Store, session_id: str, idx: int, name: str | None = None, note: str | None = None) -> TemplateVersion:
    """Save candidate `idx` of a session as a new template version (parent: the template the session tuned)."""
    session = store.tuning_session(session_id)
    if session is None:
        raise TuningError(f"No tuning session {session_id!r} in {store.path}.")
    cand = next((c for c in store.tuning_candidates(session_id) if c["idx"] == idx), None)
    if cand is None or idx == 0:
        raise TuningError(f"Session {session_id} has no candidate {idx} to adopt (candidate 0 is the current "
                          "template).")
    if cand["status"] == REJECTED:
        raise TuningError(f"Candidate {idx} was rejected ({cand['reason']}); it cannot be adopted.")
    name = name or f"{session['operation']}-{cand['hash']}"
    m = cand["measures"] or {}
    measured = (f"failure rate {m['failure_rate']:.0%} on {m['tried']} dev children"
                if m.get("failure_rate") is not None else "not measured")
    try:
        version = save_version(store, session["operation"], session["language"], cand["text"], name,
                               session["parent_version"], note or f"tuning session {session_id}, candidate {idx}: "
                                                                  f"{measured}")
    except ValueError as e:
        raise TuningError(str(e)) from None
    store.update_tuning_candidate(session_id, idx, adopted_as=version.name)
    store.update_tuning_session(session_id, status="adopted", detail=f"adopted candidate {idx} as {version.name}")
    return version


# -- 4. judging two versions --------------------------------------------------------------------------------
def _pair_key(node: Node) -> str:
    return text_hash(_normalise(node.instruction) + "\n" + _normalise(node.input))


def version_items(store: Store, a: TemplateVersion, b: TemplateVersion) -> list[Item]:
    """Pairs of kept, answered children made from the same parent instruction (same text, any run: the dev runs
    of one session are natural pairs), one by version A and one by version B; the first made of each side."""
    sides: list[dict[str, tuple[Node, Node]]] = []
    for v in (a, b):
        chosen: dict[str, tuple[Node, Node]] = {}
        for child in store.template_nodes(v.key, v.version):
            if child.status != KEPT or not (child.response or "").strip() or child.parent_id is None:
                continue
            parent = store.get_node(child.parent_id)
            if parent is None:
                continue
            key = _pair_key(parent)
            if key not in chosen or (child.created_at, child.id) < (chosen[key][1].created_at, chosen[key][1].id):
                chosen[key] = (parent, child)
        sides.append(chosen)
    items = []
    for key in sorted(set(sides[0]) & set(sides[1])):
        parent, node_a = sides[0][key]
        items.append(Item(key=key, a=Side(a.label, node_a), b=Side(b.label, sides[1][key][1]),
                          seed_instruction=parent.instruction))
    return items


def versions_comparison(a: TemplateVersion, b: TemplateVersion) -> str:
    return f"template:{a.key}:{a.version}-vs-{b.version}"


def resolve_pair(store: Store, operation: str, ref_a: str, ref_b: str,
                 language: str | None = None) -> tuple[TemplateVersion, TemplateVersion]:
    """Two versions of one operation in one language (the first language both refs have, or `language`)."""
    try:
        found_a, found_b = resolve(store, operation, ref_a, language), resolve(store, operation, ref_b, language)
    except ValueError as e:
        raise TuningError(str(e)) from None
    for va in found_a:
        for vb in found_b:
            if va.language == vb.language:
                return va, vb
    raise TuningError(f"{ref_a!r} and {ref_b!r} are {operation} versions of different languages.")


async def compare_versions(store: Store, client: LLMClient, a: TemplateVersion, b: TemplateVersion, *,
                           max_tokens: int = 256, temperature: float = 0.0) -> dict[str, Any]:
    """The position-swapped pairwise judge (evolab/audit/judge.py) on `version_items`; rows stored under
    `versions_comparison(a, b)`. Adds the verdicts of each order (A shown first, A shown second)."""
    comparison = versions_comparison(a, b)
    rows = await judge_items(store, client, comparison, version_items(store, a, b), max_tokens=max_tokens,
                             temperature=temperature)
    out = {"comparison": comparison, **summarize_judgments(rows), "rows": rows}
    out["a_first"] = dict(Counter(r["first_verdict"] or "unknown" for r in rows))
    out["a_second"] = dict(Counter(r["second_verdict"] or "unknown" for r in rows))
    out["swap"] = position_swap_counts(rows)
    return out


def format_comparison(result: dict[str, Any], a: TemplateVersion, b: TemplateVersion) -> str:
    if not result["n"]:
        return (f"{result['comparison']}: nothing to compare: no parent instruction has a kept, answered child from "
                "both versions (tune both on the same run, or run both with --template on the same seeds).")
    lines = [f"{result['comparison']}: A = {a.label}, B = {b.label}; {result['n']} pairs judged twice with the "
             "answers swapped"]
    for k in ("win", "tie", "lose", "unknown"):
        lines.append(f"  A {k:8} {result[k]:5}  ({result[k + '_rate']:.0%})")
    lines.append("  A shown first:  " + ", ".join(f"{k} {v}" for k, v in sorted(result["a_first"].items())))
    lines.append("  A shown second: " + ", ".join(f"{k} {v}" for k, v in sorted(result["a_second"].items())))
    swap = result["swap"]
    lines.append(f"  position swap: the same verdict in both orders for {swap['same']} of {swap['both_read']} pairs, "
                 f"changed by the order for {swap['flipped']}, unreadable in an order for {swap['unread']}")
    return "\n".join(lines)

