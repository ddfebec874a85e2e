"""Plain helpers behind the Streamlit pages: settings, seed sources, tables, progress, node details.

No Streamlit import here: every function takes a Store (or plain values) and returns plain values or
DataFrames, so the pages stay thin and the logic is tested without a browser.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from evolab.analysis.report import write_report
from evolab.app import jobs
from evolab.app.jobs import Job
from evolab.audit import judge
from evolab.engine.batch import BatchOptions, batch_summary, cancel_run_batches
from evolab.engine.eliminator import rule_ids
from evolab.engine.estimate import price_text as text
from evolab.engine.lease import describe_holder, live_holder
from evolab.engine.operations import check_weights, operation_names
from evolab.engine.pipeline import expected_steps
from evolab.engine.runconfig import RunConfigError, build_run_config, check_budget_price, endpoint_problem, price_of
from evolab.export.formats import count_selected, write_export
from evolab.llm.client import LLMClient, make_backend, structured_meta_key
from evolab.llm.local import LOCAL_MODEL_ALIAS, LOCAL_TOKEN_LIMITS
from evolab.llm.base import mask_secrets, redact_url
from evolab.llm.openai_backend import key_env_problem
from evolab.schema import ELIMINATED, FAILED, KEPT, PENDING, SEED, Node, RunConfig, Seed
from evolab.seeds.fields import SeedFileError, inside
from evolab.seeds.files import EXAMPLE_SETS, load_example, summarize
from evolab.store import Store

DEFAULT_DB = "evolab.db"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The embedded 135M model is for trying the workflow: short replies keep a step to seconds, not minutes
# (it often rambles until max_tokens, at 20-80 tokens/s on 2 CPU cores).


def default_db_path() -> str:
    """The store the app opens first: $EVOLAB_DB, else evolab.db in the working folder."""
    return os.environ.get("EVOLAB_DB") or DEFAULT_DB


# -- settings ----------------------------------------------------------------------------------------
@dataclass
class Settings:
    """What the sidebar holds. `api_key_env` is the *name* of a variable; the key is never kept here."""

    db_path: str = field(default_factory=default_db_path)
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    structured: str = "auto"  # auto | on | off (see LLMClient.structured_mode)

    @property
    def uses_local_model(self) -> bool:
        return not self.base_url.strip()

    @property
    def model_name(self) -> str:
        return LOCAL_MODEL_ALIAS if self.uses_local_model else self.model.strip()

    @property
    def endpoint_label(self) -> str:
        if self.uses_local_model:
            return f"embedded local model ({LOCAL_MODEL_ALIAS})"
        return f"{self.model_name or '(no model)'} at {redact_url(self.base_url.strip())}"

    def problems(self) -> list[str]:
        """What stops a run from starting with these settings, each with what to do."""
        out = []
        problem = endpoint_problem(self.base_url, self.model)  # the CLI's words: one check for both
        if problem:
            out.append(problem)
        name = self.api_key_env.strip()
        if name and not _ENV_NAME.match(name):
            out.append(f"{name!r} is not a variable name: give the NAME of the environment variable or secret "
                       "that holds the key (e.g. OPENAI_API_KEY), never the key itself.")
        elif name and key_env_problem(name):  # the allow-list: *_API_KEY or EVOLAB_KEY_VARS, no secret family
            out.append(key_env_problem(name))
        return out

    @property
    def endpoint_id(self) -> str:
        """The endpoint as the cache and the structured-output probe know it (credentials masked, as the backend's)."""
        return "embedded" if self.uses_local_model else redact_url(self.base_url.strip().rstrip("/"))

    def structured_status(self, store: Store) -> str:
        """What the sidebar says about structured output for this endpoint and model."""
        if self.structured == "off":
            return "off: judges' replies are read as free text"
        known = store.get_meta(structured_meta_key(self.endpoint_id, self.model_name))
        if not known:
            return f"{self.structured}: not probed yet (the first run or step asks once and remembers)"
        info = json.loads(known)
        mode = info.get("mode")
        how = {"json_schema": "JSON schema (OpenAI's json_schema)",
               "json_object": "JSON schema (json_object with a schema, llama.cpp grammar)",
               "none": "not supported: free-text readers"}.get(mode, str(mode))
        return f"{self.structured}: {how}"

    def key_status(self) -> str:
        """Whether the named key variable is set (the value is never shown)."""
        name = self.api_key_env.strip()
        if not name:
            return "no key variable named (fine for local servers that need no key)"
        if not _ENV_NAME.match(name):
            return "not a variable name"
        if key_env_problem(name):
            return "not read: " + key_env_problem(name)
        return f"{name} is set" if os.environ.get(name) else f"{name} is not set"

    def token_defaults(self) -> dict[str, int]:
        """Reply length limits: shorter for the embedded model, RunConfig's own for a real endpoint."""
        if self.uses_local_model:
            return dict(LOCAL_TOKEN_LIMITS)
        base = RunConfig()
        return {k: getattr(base, k) for k in LOCAL_TOKEN_LIMITS}

    def run_config(self, **choices: Any) -> RunConfig:
        """A RunConfig for these settings and the Runs page's `choices`, built and checked by the CLI's own
        builder (evolab.engine.runconfig.build_run_config: any RunConfig field, rules as a dict, price as
        "IN,OUT"); a bad choice raises RunConfigError with the CLI's words."""
        return build_run_config(model=self.model_name, base_url=self.base_url, api_key_env=self.api_key_env.strip()
                                or None, structured=self.structured, restrict_key_env=True,
                                **{**self.token_defaults(), **choices})


# -- seed sources -------------------------------------------------------------------------------------
SeedSource = tuple[str, str]  # ("table", ""), ("set", name), ("example", name)


def seed_sources(store: Store, table_seeds: list[Seed] | None = None) -> list[SeedSource]:
    out: list[SeedSource] = []
    if table_seeds:
        out.append(("table", ""))
    out += [("set", name) for name in store.seed_sets()]
    out += [("example", name) for name in EXAMPLE_SETS]
    return out


def seed_source_label(source: SeedSource, table_seeds: list[Seed] | None = None) -> str:
    kind, name = source
    if kind == "table":
        return f"The table on the Seeds page ({len(table_seeds or [])} seeds, not saved)"
    if kind == "set":
        return f"Seed set: {name}"
    return f"Example set: {name}"


def load_seed_source(store: Store, source: SeedSource, table_seeds: list[Seed] | None = None) -> list[Seed]:
    kind, name = source
    if kind == "table":
        return list(table_seeds or [])
    if kind == "set":
        return store.load_seed_set(name)
    return load_example(name)


# The Seeds page's "path on this machine" box reads only under the folders the server's owner lists here
# (os.pathsep-separated); none by default, and then only uploads work.
SEED_DIRS_ENV = "EVOLAB_SEED_DIRS"


def seed_dirs() -> list[Path]:
    """The folders the app may read seed files from ($EVOLAB_SEED_DIRS), resolved; [] when none is set."""
    return [Path(os.path.realpath(os.path.expanduser(d.strip())))
            for d in os.environ.get(SEED_DIRS_ENV, "").split(os.pathsep) if d.strip()]


def seed_dirs_note() -> str:
    """What the path box says: where it may read, or that it is off and how to turn it on."""
    dirs = seed_dirs()
    if dirs:
        return "Paths under: " + ", ".join(map(str, dirs)) + f" (set by the server's {SEED_DIRS_ENV})."
    return (f"Reading paths on this machine is off: upload the file above instead. To allow folders, whoever runs "
            f"the app sets {SEED_DIRS_ENV} to them (separated by '{os.pathsep}') and restarts it, e.g. "
            f"{SEED_DIRS_ENV}=/data/seeds streamlit run app.py.")


def seed_path(text: str) -> Path:
    """The path typed in the app's box, resolved (symlinks, "..", "~"; a relative path is taken in the first allowed
    folder), if it lies under a folder of $EVOLAB_SEED_DIRS. Raises SeedFileError naming the path otherwise."""
    dirs = seed_dirs()
    if not dirs:
        raise SeedFileError(text, None, seed_dirs_note())
    path = Path(os.path.expanduser(text.strip()))
    resolved = Path(os.path.realpath(path if path.is_absolute() else dirs[0] / path))
    if not any(inside(resolved, d) for d in dirs):
        raise SeedFileError(text, None, "is outside the folders this app may read ("
                                        + ", ".join(map(str, dirs)) + f", set by {SEED_DIRS_ENV}); upload the "
                                        "file instead, or copy it into one of them")
    return resolved


def seed_counts(seeds: list[Seed]) -> dict[str, pd.DataFrame]:
    """Counts by skill, difficulty and language as small tables for the Seeds page."""

    s = summarize(seeds)

    def frame(d: dict, col: str) -> pd.DataFrame:
        return pd.DataFrame({col: [str(k) for k in d], "seeds": list(d.values())})

    return {"skill": frame(s["by_skill"], "skill"), "difficulty": frame(s["by_difficulty"], "difficulty"),
            "language": frame(s["by_language"], "language"), "count": s["count"], "with_input": s["with_input"]}


# -- runs ---------------------------------------------------------------------------------------------
def run_label(run: dict[str, Any]) -> str:
    """Name and id (the status changes while a page is open, so the pages show it beside the picker)."""
    name = run.get("name") or run["id"]
    started = time.strftime("%m-%d %H:%M", time.localtime(run["created_at"]))
    return f"{name} · {started}" if name == run["id"] else f"{name} · {run['id']}"


def runs_frame(store: Store, runs: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per run: what the Runs page lists."""
    rows = []
    for run in runs if runs is not None else store.list_runs():
        cfg: RunConfig = run["config"]
        s = store.run_summary(run["id"])
        rows.append({
            "run": run["id"], "name": run["name"], "status": run["status"], "model": cfg.model,
            "endpoint": redact_url(cfg.base_url) or "embedded local model", "seeds": len(run["seeds"]),
            "seed set": seed_set_label(run), "rounds": cfg.rounds, "fan-out": cfg.fanout, "nodes": s["nodes"],
            "kept": s["by_status"].get(KEPT, 0), "eliminated": s["by_status"].get(ELIMINATED, 0),
            "failed": s["by_status"].get(FAILED, 0), "calls": s["calls"],
            "cost USD": round(s["cost_usd"], 4),
            "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created_at"])),
        })
    cols = ["run", "name", "status", "model", "endpoint", "seeds", "seed set", "rounds", "fan-out", "nodes", "kept",
            "eliminated", "failed", "calls", "cost USD", "created"]
    return pd.DataFrame(rows, columns=cols)


def seed_set_label(run: dict[str, Any]) -> str:
    """"finance v3": the saved seed set a run started from and its version ("" for a file or the table)."""
    if not run.get("seed_set"):
        return ""
    version = run.get("seed_set_version")
    return f"{run['seed_set']} v{version}" if version is not None else f"{run['seed_set']} (edited)"


def run_version(store: Store, run_id: str) -> tuple:
    """Changes whenever the run's nodes, scores or status change: the key of the pages' caches."""
    run = store.get_run(run_id)
    return (*store.run_version(run_id), run["status"] if run else None)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def progress_info(store: Store, run_id: str, job: Any = None, now: float | None = None) -> dict[str, Any]:
    """Live numbers of a run: steps done / expected, counts by status and rule, calls, tokens, cost, ETA.

    `job` is the worker's Job (or None when no worker of this process runs it); the ETA extrapolates
    the pace of the steps finished since that job started."""
    now = now or time.time()
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    cfg: RunConfig = run["config"]
    summary = store.run_summary(run_id)
    until = cfg.rounds
    if job is not None and getattr(job, "until_round", None):
        until = min(job.until_round, cfg.rounds)
    nodes = store.nodes(run_id)
    children = [n for n in nodes if n.round > 0 and n.status != PENDING]
    done_until = sum(1 for n in children if n.round <= until)
    expected = max(expected_steps(len(run["seeds"]), until, cfg.fanout), done_until)
    if run["status"] == "finished" or (run["status"] == "paused" and not (job and job.alive)):
        expected = done_until  # eliminated children end their branch: fewer steps than the K^r bound
    eta = eta_range = None
    fresh = 0
    running = job is not None and getattr(job, "alive", False)
    if running:
        fresh = sum(1 for n in children if n.created_at >= job.started_at)
        eta = eta_seconds(fresh, expected - done_until, now - job.started_at)
        eta_range = eta_interval(fresh, expected - done_until, now - job.started_at)
    max_round = max((n.round for n in children), default=0)
    activity = recent_activity(store.calls(run_id), now, since=job.started_at) if running else None
    return {
        "elsewhere": None if running else running_elsewhere(store, run_id),  # another process's engine (lease)
        "status": run["status"], "error": mask_secrets(run["error"]) or None, "until_round": until, "rounds": cfg.rounds,
        "done": done_until, "expected": expected, "fraction": (done_until / expected) if expected else 1.0,
        "by_status": summary["by_status"], "by_rule": summary["by_rule"], "calls": summary["calls"],
        "cached_calls": summary["cached_calls"], "failed_calls": summary["failed_calls"],
        "tokens": summary["prompt_tokens"] + summary["completion_tokens"],
        "reasoning_tokens": summary.get("reasoning_tokens", 0),
        "prompt_tokens": summary["prompt_tokens"], "completion_tokens": summary["completion_tokens"],
        "cost_usd": summary["cost_usd"], "price_known": summary["price_known"], "eta_s": eta,
        "eta_range": eta_range, "steps_seen": fresh, "remaining": max(0, expected - done_until), "activity": activity,
        "running": running, "max_round": max_round,
        "kept": summary["by_status"].get(KEPT, 0), "eliminated": summary["by_status"].get(ELIMINATED, 0),
        "failed": summary["by_status"].get(FAILED, 0), "seeds": summary["by_status"].get(SEED, 0),
    }


def running_elsewhere(store: Store, run_id: str) -> str | None:
    """Who runs this run while its lease is live (host, pid, since when: evolab/engine/lease.py), else None. The
    Runs page shows it and offers no Resume meanwhile (when this process's worker runs it, `running` says so)."""
    holder = live_holder(store, run_id)
    return describe_holder(holder) if holder else None


def run_price(config: RunConfig):
    """The Price a run's calls are billed at (None: unknown)."""

    return price_of(config)


def price_text(config: RunConfig) -> str:
    """Which price a run uses: the model id matched, per million in/out, and where it came from."""

    return text(run_price(config), config.model)


def budget_problems(config: RunConfig) -> list[str]:
    """A dollar budget without a known price cannot hold: the run must not start (the CLI's words)."""
    try:
        check_budget_price(config)
    except RunConfigError as e:
        return [str(e)]
    return []


def eta_seconds(done_since_start: int, remaining: int, elapsed_s: float) -> float | None:
    """Remaining steps at the pace of this worker so far (None before its first step)."""
    if done_since_start <= 0 or elapsed_s <= 0:
        return None
    return max(0, remaining) * elapsed_s / done_since_start


def eta_interval(done_since_start: int, remaining: int, elapsed_s: float) -> tuple[float, float] | None:
    """A 95% range for the ETA: the remaining steps at the slowest and fastest step rates the count so far allows
    (steps finished in `elapsed_s` read as a Poisson count; Wilson-Hilferty bounds). None before the first step."""
    n = done_since_start
    if n <= 0 or elapsed_s <= 0:
        return None
    z = 1.96
    low_n = n * max(1 - 1 / (9 * n) - z / (3 * math.sqrt(n)), 0.0) ** 3
    high_n = (n + 1) * (1 - 1 / (9 * (n + 1)) + z / (3 * math.sqrt(n + 1))) ** 3
    remaining = max(0, remaining)
    return (remaining * elapsed_s / high_n, math.inf if low_n <= 0 else remaining * elapsed_s / low_n)


MIN_STEPS_FOR_RANGE = 3


def eta_text(info: dict[str, Any]) -> str:
    """The ETA as the Runs page says it: the observed rate's estimate with its 95% range; "finishing" once every
    expected step is done while the last answers and scores come in (never "0 s" while work remains); before the
    first step, that it waits for one."""
    if not info.get("running"):
        return "–"
    if info.get("remaining", 0) <= 0:
        return "finishing"
    if info.get("eta_s") is None:
        return "after the first step"
    low, high = info["eta_range"] or (None, None)
    text = format_duration(max(1.0, info["eta_s"]))
    seen = info.get("steps_seen", 0)
    if low is None or seen < MIN_STEPS_FOR_RANGE:  # a range from one or two steps spans minutes to hours
        return f"about {text} (rough: {seen} step{'' if seen == 1 else 's'} so far)"
    return f"{text} ({format_duration(max(1.0, low))} – " + (
        "longer" if not math.isfinite(high) or high > 100 * 3600 else format_duration(high)) + ")"


def recent_activity(calls: Iterable[Any], now: float, window_s: float = 60.0,
                    since: float | None = None) -> dict[str, Any]:
    """What the run is doing, from its stored calls: calls and tokens per minute over the last `window_s`
    seconds, or since the worker started (`since`) when that is shorter (cache hits left out: they took no time),
    how many of each purpose, and seconds since the last one."""
    calls = list(calls)
    span = max(1.0, min(window_s, now - since) if since is not None else window_s)
    recent = [c for c in calls if now - c.created_at <= span and not c.cached]
    cached = sum(1 for c in calls if now - c.created_at <= span and c.cached)
    last = max((c.created_at for c in calls), default=None) if not recent else max(c.created_at for c in recent)
    by_purpose: dict[str, int] = {}
    for c in recent:
        by_purpose[c.purpose] = by_purpose.get(c.purpose, 0) + 1
    scale = 60.0 / span
    return {"span_s": span, "calls_per_min": len(recent) * scale,
            "tokens_per_min": sum(c.prompt_tokens + c.completion_tokens for c in recent) * scale,
            "errors": sum(1 for c in recent if c.error), "by_purpose": by_purpose, "cached": cached,
            "last_call_s": None if last is None else max(0.0, now - last)}


def activity_text(activity: dict[str, Any] | None) -> str:
    """ "Now: 24 calls/min · 3,100 tokens/min over the last minute (evolve 8, respond 8, equal 8) · last call 1 s
    ago" """
    if not activity:
        return ""
    from_cache = f" · {activity['cached']} answered from the cache" if activity.get("cached") else ""
    if not activity["by_purpose"]:
        since = activity["last_call_s"]
        return ("Now: no call finished in the last minute" +
                (f" (the last {format_duration(since)} ago)" if since is not None else " (waiting for the first)")
                + from_cache)
    purposes = ", ".join(f"{p} {k}" for p, k in sorted(activity["by_purpose"].items(), key=lambda kv: -kv[1]))
    over = "the last minute" if activity["span_s"] >= 59.5 else f"the last {format_duration(activity['span_s'])}"
    return (f"Now: {activity['calls_per_min']:.0f} calls/min · {activity['tokens_per_min']:,.0f} tokens/min over "
            f"{over} ({purposes})" + (f" · {activity['errors']} failed" if activity["errors"] else "")
            + f" · last call {format_duration(activity['last_call_s'])} ago" + from_cache)


def estimate_frame(est: dict[str, Any]) -> pd.DataFrame:
    """The Runs page's estimate table (`estimate_run`), one row per case, as text: calls, tokens (prompt + output),
    time, cost and the cost as batch jobs."""
    def money(v: float | None) -> str:
        return "unknown" if v is None else f"${v:,.4f}" if v < 100 else f"${v:,.0f}"

    return pd.DataFrame([{"case": k, "calls": f"{est[k]['calls']:,}",
                          "tokens": f"{est[k]['prompt_tokens'] + est[k]['completion_tokens']:,}",
                          "time": format_duration(est[k]["seconds"]), "cost": money(est[k]["cost_usd"]),
                          "as batch": money(est[k]["cost_usd_batch"])} for k in ("low", "expected", "high")])


def counts_frame(counts: dict[str, int], label: str) -> pd.DataFrame:
    return pd.DataFrame({label: list(counts), "nodes": list(counts.values())}).sort_values(
        "nodes", ascending=False, kind="stable").reset_index(drop=True)


def next_action(status: str, max_round: int, rounds: int) -> str:
    """What the Runs page offers for a run that is not running: "start", "continue" or "done"."""
    if status == "finished" or (status == "paused" and max_round >= rounds):
        return "done"
    if status in ("created",):
        return "start"
    return "continue"


def round_table(nodes: pd.DataFrame, round_: int) -> pd.DataFrame:
    """The nodes one round made, for inspecting a stepped batch: seed, operation, status, rule, texts."""
    cols = ["seed", "operation", "status", "rule", "instruction", "detail", "difficulty", "quality", "id"]
    if nodes is None or nodes.empty:
        return pd.DataFrame(columns=cols)
    g = nodes[nodes["round"] == round_].copy()
    g["seed"] = g["seed_instruction"].fillna("")
    for c in ("difficulty", "quality"):
        if c not in g:
            g[c] = math.nan
    order = {KEPT: 0, ELIMINATED: 1, FAILED: 2}
    g["_o"] = g["status"].map(lambda s: order.get(s, 3))
    return g.sort_values(["_o", "seed"], kind="stable")[cols].reset_index(drop=True)


# -- nodes --------------------------------------------------------------------------------------------
def node_label(node: Node | dict[str, Any], width: int = 70, *, status: bool = True) -> str:
    """"R2 · deepen · kept · <instruction>". Selectboxes leave the status out: a keep or discard by
    hand changes it, and a selectbox does not redraw the label of the option it shows."""
    get = (lambda k: node.get(k)) if isinstance(node, dict) else (lambda k: getattr(node, k))
    text = " ".join(str(get("instruction") or "").split())
    if len(text) > width:
        text = text[:width - 1] + "…"
    parts = [f"R{get('round')}", str(get("operation"))]
    if status:
        state, rule = get("status"), get("rule")
        parts.append(f"{state} ({rule})" if rule and state != KEPT else state)
    return " · ".join(parts + [text])


@dataclass
class NodeDetail:
    node: Node
    verdicts: pd.DataFrame  # rule, passed, detail, judge
    scores: pd.DataFrame  # metric, value, judge, detail
    calls: pd.DataFrame  # purpose, model, tokens in/out, cost, cached, error
    children: list[Node]
    parent: Node | None


def node_detail(store: Store, node_id: str) -> NodeDetail | None:
    """Everything the step-through and lineage pages show about one node, read from the store."""
    node = store.get_node(node_id)
    if node is None:
        return None
    verdict_rows, score_rows = [], []
    for s in store.scores(node_id=node_id):
        if s.metric.startswith("rule:"):
            # passed is None when the rule's judge gave an unreadable reply (the step failed as `unreadable`)
            verdict_rows.append({"rule": s.metric[5:], "passed": None if s.value is None else bool(s.value),
                                 "detail": s.detail or "", "judge": s.judge})
        else:
            score_rows.append({"metric": s.metric, "value": s.value, "judge": s.judge, "detail": s.detail or ""})
    scores = pd.DataFrame(score_rows, columns=["metric", "value", "judge", "detail"])
    if not scores.empty:  # a truncated answer's flag first, LLM scores next, then the heuristic cx_* ones
        scores["_o"] = scores["metric"].map(lambda m: (m.startswith("cx_"), m != "truncated_answer", m))
        scores = scores.sort_values("_o").drop(columns="_o").reset_index(drop=True)
    call_rows = [{"purpose": c.purpose, "model": c.model, "prompt tokens": c.prompt_tokens,
                  "completion tokens": c.completion_tokens, "reasoning tokens": c.reasoning_tokens,
                  "latency s": round(c.latency_s, 2),
                  "cost USD": c.cost_usd, "cached": c.cached, "error": c.error or ""}
                 for c in store.calls(node.run_id, node_id=node_id)]
    return NodeDetail(
        node=node,
        verdicts=pd.DataFrame(verdict_rows, columns=["rule", "passed", "detail", "judge"]),
        scores=scores,
        calls=pd.DataFrame(call_rows, columns=["purpose", "model", "prompt tokens", "completion tokens",
                                               "reasoning tokens", "latency s", "cost USD", "cached", "error"]),
        children=store.children(node_id),
        parent=store.get_node(node.parent_id) if node.parent_id else None,
    )


VERDICT_WORDS = {True: "✓\u00a0passed", False: "✗\u00a0failed", None: "?\u00a0unreadable"}  # never split
DECIDED_MARK = "\u00a0◀\u00a0decided"


def verdict_rows(verdicts: pd.DataFrame, status: str, rule: str | None) -> pd.DataFrame:
    """The rule verdicts as a person reads them: one row per rule id, whatever registered it (a rule with a cheap
    check and an LLM judge, like no_new_information, is one row whose stages read in the order they ran), the rule
    that eliminated or failed the node first and marked, then the other failures, then the rest in cascade order.
    Columns: rule, verdict ("✓ passed", "✗ failed", "? unreadable"; the deciding one ends with " ◀ decided"),
    found (each stage's finding) and `outcome` (True, False or None) for colouring."""
    columns = ["rule", "verdict", "found", "outcome"]
    if verdicts is None or verdicts.empty:
        return pd.DataFrame(columns=columns)
    rows: dict[str, dict[str, Any]] = {}
    cascade = {r: i for i, r in enumerate(rule_ids())}  # the store keeps no order: the cascade's, a judge last
    records = sorted(verdicts.to_dict("records"), key=lambda v: (
        cascade.get(v["rule"], len(cascade)), v["rule"], v.get("judge") not in (None, "", "heuristic")))
    for v in records:
        passed = None if v["passed"] is None or (isinstance(v["passed"], float) and math.isnan(v["passed"])) \
            else bool(v["passed"])
        stage = "cheap check" if v.get("judge") in (None, "", "heuristic") else f"judge {v['judge']}"
        row = rows.setdefault(v["rule"], {"rule": v["rule"], "stages": [], "outcomes": []})
        row["stages"].append((stage, passed, str(v.get("detail") or "")))
        row["outcomes"].append(passed)
    decided = rule if status in (ELIMINATED, FAILED) else None
    out = []
    for order, row in enumerate(rows.values()):
        outcome = False if False in row["outcomes"] else (None if None in row["outcomes"] else True)
        if len(row["stages"]) == 1:
            found = row["stages"][0][2]
        else:  # the stages in the order they ran, each with its own outcome
            found = " → ".join(f"{stage} {VERDICT_WORDS[p][0]} {detail}".rstrip()
                               for stage, p, detail in row["stages"])
        is_decided = row["rule"] == decided
        out.append({"rule": row["rule"], "verdict": VERDICT_WORDS[outcome] + (DECIDED_MARK if is_decided else ""),
                    "found": found, "outcome": outcome,
                    "_o": (not is_decided, outcome is not False, outcome is not None, order)})
    frame = pd.DataFrame(out).sort_values("_o", kind="stable").drop(columns="_o").reset_index(drop=True)
    return frame[columns]


def lineage_nodes(nodes: pd.DataFrame, root_id: str | None) -> pd.DataFrame:
    """The rows of one seed's tree (all rows when root_id is None)."""
    if nodes is None or nodes.empty or root_id is None:
        return nodes
    return nodes[nodes["root_id"] == root_id].reset_index(drop=True)


def roots_of(nodes: pd.DataFrame) -> list[dict[str, Any]]:
    """Seeds of a run with the size of their trees, in creation order."""
    if nodes is None or nodes.empty:
        return []
    sizes = nodes.groupby("root_id").size()
    seeds = nodes[nodes["parent_id"].isna()].sort_values(["created_at", "id"], kind="stable")
    return [{"id": r["id"], "instruction": r["instruction"], "nodes": int(sizes.get(r["id"], 1)),
             "skill": r.get("skill")} for r in seeds.to_dict("records")]


def selected_node_id(event: Any) -> str | None:
    """The node id of the first selected point of a plotly chart event (`st.plotly_chart(on_select=...)`):
    viz puts node ids in each trace's customdata. None when nothing usable is selected."""
    if event is None:
        return None
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    if selection is None:
        return None
    points = selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else getattr(point, "customdata", None)
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if isinstance(data, str) and data:
            return data
    return None


# -- compare ------------------------------------------------------------------------------------------
def compare_means(a: pd.DataFrame, b: pd.DataFrame, metrics: Iterable[str], label_a: str = "A",
                  label_b: str = "B") -> pd.DataFrame:
    """Mean of each metric in two node frames and the change B - A (with counts)."""
    rows = []
    for m in metrics:
        va = pd.to_numeric(a[m], errors="coerce").dropna() if m in a else pd.Series(dtype=float)
        vb = pd.to_numeric(b[m], errors="coerce").dropna() if m in b else pd.Series(dtype=float)
        ma = float(va.mean()) if len(va) else math.nan
        mb = float(vb.mean()) if len(vb) else math.nan
        rows.append({"metric": m, f"{label_a} mean": ma, f"{label_b} mean": mb, "change (B - A)": mb - ma,
                     f"{label_a} n": len(va), f"{label_b} n": len(vb)})
    return pd.DataFrame(rows)


def pool(nodes: pd.DataFrame, round_: int | None = None) -> pd.DataFrame:
    """The rows a comparison uses: seeds and kept nodes (of one round when given)."""
    if nodes is None or nodes.empty:
        return nodes
    out = nodes[nodes["status"].isin([SEED, KEPT])]
    if round_ is not None:
        out = out[out["round"] == round_]
    return out


JUDGE = "judge"  # the Compare page's judge jobs in the app's registry (evolab/app/jobs.py), one per comparison


def judge_job(comparison: str) -> Job | None:
    return jobs.get(JUDGE, comparison)


def start_judge(db_path: str, config: RunConfig, comparison: str, *, run_id: str, round_a: int | None = None,
                round_b: int | None = None, run_b: str | None = None, backend_factory: Any = None) -> Job:
    """Judge two rounds of a run (round_a, round_b) or two runs (run_id vs run_b) in a worker thread;
    each judgment row is stored as it completes (store.judgments(comparison)); `job.result` is the summary."""

    def work(store: Store, job: Job) -> dict[str, Any]:
        backend = backend_factory() if backend_factory else make_backend(config)
        client = LLMClient(backend, store, concurrency=config.concurrency, structured=config.structured)
        try:
            kw = {"max_tokens": config.max_tokens_judge, "temperature": config.temperature_judge}
            if run_b is None:
                return judge.judge_rounds_sync(store, client, run_id, int(round_a), int(round_b), **kw)
            return judge.judge_runs_sync(store, client, run_id, run_b, **kw)
        finally:
            try:
                asyncio.run(client.aclose())
            except Exception:
                pass

    return jobs.start(JUDGE, comparison, work, db_path=db_path)


def judgments_table(rows: list[dict[str, Any]], store: Store) -> pd.DataFrame:
    """Stored judgment rows as the Compare page shows them: both orders' verdicts and the outcome."""

    out = []
    for r in rows:
        try:
            detail = json.loads(r.get("detail") or "{}")
        except ValueError:
            detail = {}
        a = store.get_node(r["node_a"]) if r.get("node_a") else None
        b = store.get_node(r["node_b"]) if r.get("node_b") else None
        out.append({
            "A": r["label_a"], "B": r["label_b"],
            "A instruction": a.instruction if a else "", "B instruction": b.instruction if b else "",
            "A first (scores)": _scores_text(detail.get("scores_first")),
            "A first": r.get("first_verdict") or "unparsed",
            "B first (scores)": _scores_text(detail.get("scores_second")),
            "A second": r.get("second_verdict") or "unparsed",
            "outcome for A": r.get("outcome"), "judge": r.get("judge"),
        })
    cols = ["A", "B", "A instruction", "B instruction", "A first (scores)", "A first", "B first (scores)",
            "A second", "outcome for A", "judge"]
    return pd.DataFrame(out, columns=cols)


def _scores_text(scores: Any) -> str:
    if not scores:
        return "–"
    return " / ".join(f"{float(s):g}" for s in scores)


# -- export -------------------------------------------------------------------------------------------
EXPORT_EXTENSIONS = {"alpaca": "json", "sharegpt": "json", "openai": "jsonl", "lineage": "jsonl"}


def export_filename(run: dict[str, Any] | str, fmt: str) -> str:
    run_id = run if isinstance(run, str) else run["id"]
    return f"evolab-{run_id}-{fmt}.{EXPORT_EXTENSIONS.get(fmt, 'txt')}"


def export_bytes(db_path: str, run_id: str, fmt: str, select: dict[str, Any]) -> bytes:
    """The export file, built when the download button is clicked (in Streamlit's download thread,
    so it opens its own connection)."""

    store = Store(db_path)
    buffer = io.StringIO()  # a download is handed to Streamlit whole; the CLI streams to a file
    try:
        write_export(store, run_id, fmt, buffer, **select)
        return buffer.getvalue().encode("utf-8")
    finally:
        store.close()



def report_bytes(db_path: str, run_id: str) -> bytes:
    """The HTML report of a run, written to a temporary file and read back."""
    store = Store(db_path)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_report(store, run_id, Path(tmp) / "report.html")
            return Path(path).read_bytes()
    finally:
        store.close()


def export_count(store: Store, run_id: str, select: dict[str, Any]) -> int:
    return count_selected(store, run_id, **select)


def operation_weights_frame(weights: dict[str, float] | None = None) -> pd.DataFrame:
    weights = weights or {op: 1.0 for op in operation_names()}
    return pd.DataFrame({"operation": list(operation_names()), "weight": [float(weights.get(op, 0.0)) for op in operation_names()]})


def weights_from_frame(frame: pd.DataFrame) -> dict[str, float]:
    """Operation weights from the edited table; raises RunConfigError (a ValueError) with what to fix."""
    out: dict[str, float] = {}
    for row in frame.to_dict("records"):
        op, w = row.get("operation"), row.get("weight")
        if op not in operation_names():
            continue
        try:
            w = float(w) if w is not None and not (isinstance(w, float) and math.isnan(w)) else 0.0
        except (TypeError, ValueError):
            raise RunConfigError(f"--ops: Weight {w!r} for {op} is not a number.") from None
        out[op] = w
    try:  # the same check as --ops, in the same words
        return check_weights(out)
    except ValueError as e:
        raise RunConfigError(f"--ops: {e}") from None


# -- batch jobs (issue 13, evolab/engine/batch.py) ----------------------------------------------------------------
def batch_info(db: Store, run_id: str) -> dict[str, Any]:
    """The run's batch jobs for the Runs page: how many, the ones in progress, and one line to show."""

    s = batch_summary(db, run_id)
    jobs, open_jobs = s["jobs"], [j for j in s["open"] if j["engine"] == "openai"]
    ray_jobs = [j for j in s["open"] if j["engine"] == "ray"]  # --batch ray (evolab/engine/raybatch.py), CLI only
    text = ""
    if jobs:
        text = f"Batch: {len(jobs)} job(s), {s['batch_calls']:,} calls answered by batch"
        for j in open_jobs:
            text += (f" · job {j['provider_batch_id'] or '(being created)'} {j['status']}: {j['n_completed']:,} of "
                     f"{j['n_requests']:,} answered")
        for j in ray_jobs:
            text += f" · Ray job {j['status']}: {j['n_completed']:,} of {j['n_requests']:,} answered"
        if any(j["engine"] == "ray" for j in jobs):
            text += " · a Ray-backed run: go on with `python -m evolab resume --batch ray`"
        exported = [j for j in s["open"] if j["engine"] == "file"]
        if exported:
            text += f" · {exported[-1]['n_requests']:,} requests exported to {exported[-1]['input_file_id']}, " \
                    "waiting for `batch import`"
    # Resumed from this page, a Ray-backed run goes on online (what Ray answered is in the cache).
    return {"uses_batch": any(j["engine"] != "ray" for j in jobs), "open": open_jobs, "text": text}


def cancel_batches(db: Store, run_id: str) -> list[str]:
    """Cancel the run's jobs in progress (the Runs page's button); the worker polling them stops the run."""

    return cancel_run_batches(db, run_id)


def batch_options() -> Any:
    """The app's batch settings: the CLI's defaults."""

    return BatchOptions()
