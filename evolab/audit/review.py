"""A person reviews the automatic verdicts: the review queue, the reviews, and how often the rules agree.

The queue (`review_queue`) holds evolved nodes (round >= 1) a person should look at, each with the reasons it
was chosen:
- `unreadable`: a judge's or scorer's reply no one could read (the step failed as `unreadable`, a rule verdict
  with no value, or a score stored as "unreadable ...");
- `llm_judge`: an elimination decided by an LLM judge (the equality judge of paper rule 1), not by a heuristic;
- `near:<metric>>=<t>`: a score within the margin of a threshold (e.g. quality 4.3 when the filter keeps >= 4.5);
- `audit:<check>`: a random sample per check (every rule, and each scorer with a threshold), kept nodes too,
  so the agreement with "keep" is measured as well as with "discard". The sample is a bottom-k by a hash of
  (seed, check, node): the same nodes on every reload, and a node stays in it when others are added.

A review (keep / discard / skip, an optional name and note, the reasons it was shown for) is a row of its own
(`Store.add_review`), beside the rules' verdicts, never in place of them; the latest review of a node counts.
Only when the person asks for it ("apply to the data set") does a keep or discard also set the node's status
through `pipeline.override`, which is what the export reads; the rules' verdicts stay stored either way.

Agreement (`agreement`) is measured on the audit sample only (the other reasons pick borderline nodes on
purpose, which would bias it): per check, the share of reviewed nodes where the person's keep / discard equals
the check's outcome, with a 95% Wilson score interval and the counts. A rule's outcome: "discard" where it
failed the node; "keep" where it passed the node and the node passed every other rule too (a node another
rule eliminated says nothing about this one, and is not in its sample). A scorer's outcome: "keep" where the
score is at least the threshold. Too small to say anything: n < 10, or an interval wider than 0.5.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from evolab.audit.judge import position_swap_counts
from evolab.engine.checking import consistent_share
from evolab.engine.pipeline import override
from evolab.schema import FAILED
from evolab.stats import MAX_WIDTH, MIN_N, Z95, too_small, wilson_interval  # noqa: F401 (part of review's API)
from evolab.store import Store

KEEP, DISCARD, SKIP = "keep", "discard", "skip"
VERDICTS = (KEEP, DISCARD, SKIP)
UNREADABLE, LLM_JUDGE = "unreadable", "llm_judge"
HEURISTIC = "heuristic"
REASON_ORDER = {UNREADABLE: 0, LLM_JUDGE: 1, "near": 2, "audit": 3}
REASON_LABELS = {UNREADABLE: "unreadable verdict or score", LLM_JUDGE: "eliminated by the LLM judge"}
CHECK_COLUMNS = ["node_id", "run_id", "round", "check", "kind", "auto", "value", "judge"]
AGREEMENT_COLUMNS = ["check", "kind", "agree", "n", "share", "low", "high", "rule keep, person discard",
                     "rule discard, person keep", "too_small"]


# -- the checks' outcomes per node ------------------------------------------------------------------------
NODE_COLUMNS = ["id", "run_id", "round", "operation", "status", "rule", "language"]
SCORE_COLUMNS = ["node_id", "metric", "value", "judge", "unreadable"]


def review_frames(store: Store, run_ids: Iterable[str], *,
                  reviewed_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(evolved nodes, their verdict and score rows) of these runs, as `select_queue` and `checks_frame` read
    them (`Store.review_rows`: no texts, no complexity measures). `reviewed_only`: the reviewed nodes' rows alone,
    all that `agreement_of` needs."""
    nodes, scores = store.review_rows(list(dict.fromkeys(run_ids)), reviewed_only=reviewed_only)
    scores_frame = pd.DataFrame.from_records(scores, columns=SCORE_COLUMNS)
    scores_frame["value"] = pd.to_numeric(scores_frame["value"], errors="coerce")
    scores_frame["unreadable"] = scores_frame["unreadable"].astype(bool)
    return pd.DataFrame.from_records(nodes, columns=NODE_COLUMNS), scores_frame


def scorer_check(metric: str, threshold: float) -> str:
    return f"{metric}>={threshold:g}"


def parse_scorer_check(check: str) -> tuple[str, float] | None:
    metric, sep, threshold = check.partition(">=")
    if not sep:
        return None
    try:
        return metric, float(threshold)
    except ValueError:
        return None


def checks_frame(nodes: pd.DataFrame, scores: pd.DataFrame,
                 thresholds: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (evolved node, check) from `review_frames`: the check's automatic outcome `auto` ("keep",
    "discard", or None when it did not decide this node or its reply was unreadable), the value and the judge.
    `thresholds`: scorer metric -> the score a node needs to be kept (e.g. {"quality": 4.5})."""
    s = scores.merge(nodes[["id", "run_id", "round", "status"]], left_on="node_id", right_on="id", how="inner")
    verdicts = s[s["metric"].str.startswith("rule:")].copy()
    passed = (verdicts["value"] == 1).groupby(verdicts["node_id"]).all()
    failed_nodes = nodes.loc[nodes["status"] == FAILED, "id"]
    passed_all = verdicts["node_id"].map(passed).fillna(False).astype(bool) & ~verdicts["node_id"].isin(failed_nodes)
    # a rule's check id: the rule id, and " (LLM judge)" when a model decided (paper rule 1 has both)
    verdicts["check"] = verdicts["metric"].str[5:] + np.where(verdicts["judge"] == HEURISTIC, "", " (LLM judge)")
    verdicts["kind"] = "rule"
    verdicts["auto"] = np.where(verdicts["value"] == 0, DISCARD,
                                np.where((verdicts["value"] == 1) & passed_all, KEEP, None))
    parts = [verdicts]
    for metric, threshold in (thresholds or {}).items():
        scored = s[s["metric"] == metric].copy()
        scored["check"], scored["kind"] = scorer_check(metric, threshold), "scorer"
        scored["auto"] = np.where(scored["value"].isna(), None,
                                  np.where(scored["value"] >= threshold - 1e-9, KEEP, DISCARD))
        parts.append(scored)
    out = pd.concat(parts, ignore_index=True)[CHECK_COLUMNS]
    out["auto"] = out["auto"].astype(object).where(out["auto"].notna(), None)
    return out


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): every input bit moves every output bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def audit_ranks(seed: int, checks: list[str], node_ids: list[str]) -> np.ndarray:
    """Each (check, node) pair's place in its check's audit sample: fixed per (seed, check, node), whatever else
    is in the run. One hash per distinct node and per distinct check, mixed in numpy: a 10,000-node run has some
    40,000 decided pairs, and a hash per pair in Python was a quarter of the Review page's opening time."""
    nodes = {n: _hash64(n) for n in dict.fromkeys(node_ids)}
    kinds = {c: _hash64(f"{seed}|{c}") for c in dict.fromkeys(checks)}
    with np.errstate(over="ignore"):
        return _mix64(np.fromiter((nodes[n] for n in node_ids), np.uint64, len(node_ids))
                      ^ np.fromiter((kinds[c] for c in checks), np.uint64, len(checks)))


def audit_rank(seed: int, check: str, node_id: str) -> int:
    """One pair's `audit_ranks`."""
    return int(audit_ranks(seed, [check], [node_id])[0])


# -- the queue ------------------------------------------------------------------------------------------------
def select_queue(nodes: pd.DataFrame, scores: pd.DataFrame, reviews: list[dict[str, Any]], *, margin: float,
                 audit_size: int, thresholds: dict[str, float] | None = None, seed: int = 0,
                 include_reviewed: bool = False) -> pd.DataFrame:
    """The nodes to review, most pressing first (unreadable, LLM-judge eliminations, near a threshold, audit),
    with the reasons each was chosen for; `nodes` and `scores` as `review_frames` gives them. A node whose latest
    review is keep or discard leaves the queue; one the person skipped goes to its end. Columns: node_id,
    run_id, round, operation, status, rule, reasons, skipped, reviewed. `include_reviewed`: the whole queue,
    reviewed nodes too (for "k of n"), in the same order."""
    candidates = queue_candidates(nodes, scores, margin=margin, audit_size=audit_size, thresholds=thresholds,
                                  seed=seed)
    return order_queue(candidates, reviews, include_reviewed=include_reviewed)


QUEUE_COLUMNS = ["node_id", "run_id", "round", "operation", "status", "rule", "reasons", "skipped", "reviewed"]


def queue_candidates(nodes: pd.DataFrame, scores: pd.DataFrame, *, margin: float, audit_size: int,
                     thresholds: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Every node the queue holds before any review, with its reasons and their rank (`order`): the part of
    `select_queue` that the reviews do not change, so a page can keep it per run version and settings."""
    checks = checks_frame(nodes, scores, thresholds)
    picked: list[pd.DataFrame] = []  # (node_id, reason) pairs
    unreadable = set(scores.loc[scores["unreadable"], "node_id"])
    unreadable |= set(nodes.loc[(nodes["status"] == FAILED) & (nodes["rule"] == UNREADABLE), "id"])
    picked.append(pd.DataFrame({"node_id": sorted(unreadable), "reason": UNREADABLE}))
    judged = checks[(checks["kind"] == "rule") & (checks["judge"] != HEURISTIC) & (checks["auto"] == DISCARD)]
    picked.append(pd.DataFrame({"node_id": judged["node_id"], "reason": LLM_JUDGE}))
    scored = checks[(checks["kind"] == "scorer") & checks["value"].notna()]
    thresholds_of = {scorer_check(m, t): t for m, t in (thresholds or {}).items()}
    near = scored[(scored["value"] - scored["check"].map(thresholds_of).astype(float)).abs() <= margin + 1e-9]
    picked.append(pd.DataFrame({"node_id": near["node_id"], "reason": "near:" + near["check"]}))
    if audit_size > 0:
        decided = checks.loc[checks["auto"].notna(), ["node_id", "check"]].drop_duplicates()
        decided["rank"] = audit_ranks(seed, decided["check"].tolist(), decided["node_id"].tolist())
        sample = decided.sort_values(["check", "rank"]).groupby("check", sort=False).head(audit_size)
        picked.append(pd.DataFrame({"node_id": sample["node_id"], "reason": "audit:" + sample["check"]}))
    pairs = pd.concat(picked, ignore_index=True).drop_duplicates()
    columns = [c for c in QUEUE_COLUMNS if c not in ("skipped", "reviewed")] + ["order"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    reasons: dict[str, list[str]] = {}
    for node_id, reason in zip(pairs["node_id"].tolist(), pairs["reason"].tolist()):
        reasons.setdefault(node_id, []).append(reason)
    ordered = [sorted(v, key=lambda r: (REASON_ORDER.get(r.split(":")[0], 9), r)) for v in reasons.values()]
    grouped = pd.DataFrame({"node_id": list(reasons), "reasons": ordered,
                            "order": [REASON_ORDER.get(v[0].split(":")[0], 9) for v in ordered]})
    frame = grouped.merge(nodes, left_on="node_id", right_on="id", how="inner")
    frame["rule"] = frame["rule"].astype(object).where(frame["rule"].notna(), None)
    return frame[columns].reset_index(drop=True)


def _candidates_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = [c for c in QUEUE_COLUMNS if c not in ("skipped", "reviewed")] + ["order"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["rule"] = frame["rule"].astype(object).where(frame["rule"].notna(), None)
    return frame


KEPT_QUEUE_PREFIX = "review_queue:"


def kept_candidates(store: Store, run_ids: Iterable[str], *, margin: float, audit_size: int,
                    thresholds: dict[str, float] | None = None, seed: int = 0,
                    frames: Callable[[], tuple[pd.DataFrame, pd.DataFrame]] | None = None) -> pd.DataFrame:
    """`queue_candidates` of these runs, kept in the store (its meta table, one entry per choice of runs: the
    latest settings and the runs' versions) so that a new server process, or another machine on the same store,
    reads a few hundred rows back instead of reading and checking the whole run again (80,000 score rows at
    10,000 nodes). Computed again when a run moved on (its version changed) or the settings differ. `frames`: the
    runs' `review_frames` from the caller's cache, called only when they are needed. A store that cannot be
    written (read-only) computes them each time."""
    run_ids = list(dict.fromkeys(run_ids))
    settings = json.dumps({"margin": float(margin), "audit_size": int(audit_size), "seed": seed,
                           "thresholds": sorted((m, float(t)) for m, t in (thresholds or {}).items()),
                           "versions": [list(store.run_version(r)) for r in run_ids]}, sort_keys=True)
    key = KEPT_QUEUE_PREFIX + ",".join(run_ids)
    try:
        kept = json.loads(store.get_meta(key) or "{}")
    except ValueError:  # a damaged entry: computed again and rewritten
        kept = {}
    if kept.get("settings") == settings and isinstance(kept.get("rows"), list):
        return _candidates_frame(kept["rows"])
    nodes, scores = frames() if frames is not None else review_frames(store, run_ids)
    candidates = queue_candidates(nodes, scores, margin=margin, audit_size=audit_size, thresholds=thresholds,
                                  seed=seed)
    rows = candidates.to_dict("records")
    try:
        store.set_meta(key, json.dumps({"settings": settings, "rows": rows}, default=_plain))
    except sqlite3.Error:  # read-only or busy: the queue is still right, only not kept
        pass
    return _candidates_frame(rows)


def _plain(value: Any) -> Any:
    """numpy scalars in a candidate row (round, order) as JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def order_queue(candidates: pd.DataFrame, reviews: list[dict[str, Any]], *,
                include_reviewed: bool = False) -> pd.DataFrame:
    """`queue_candidates` with the latest reviews applied: reviewed (keep, discard) nodes out, or marked when
    `include_reviewed`; skipped ones last; then by reason, run, round and node."""
    latest = {r["node_id"]: r["verdict"] for r in reviews}
    verdicts = candidates["node_id"].map(latest)
    frame = candidates.assign(skipped=verdicts.eq(SKIP), reviewed=verdicts.isin([KEEP, DISCARD]))
    if not include_reviewed:
        frame = frame[~frame["reviewed"]]
    if frame.empty:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    frame = frame.sort_values(["skipped", "order", "run_id", "round", "node_id"], kind="stable")
    return frame[QUEUE_COLUMNS].reset_index(drop=True)


@dataclass
class ReviewSession:
    """The review queue as a page keeps it between key presses: computed once (`select_queue` with
    include_reviewed), then advanced by each verdict without reading the run again. Keep and discard take the node
    out; skip sends it to the end, as `select_queue` would order it on the next open."""

    pending: list[dict[str, Any]]  # the queue's rows still to review, next first
    total: int  # reviewed and pending: the "n" of "Node k of n"

    @classmethod
    def from_queue(cls, whole: pd.DataFrame) -> "ReviewSession":
        rows = whole.to_dict("records")
        return cls([r for r in rows if not r["reviewed"]], len(rows))

    @property
    def done(self) -> int:
        return self.total - len(self.pending)

    @property
    def skipped(self) -> int:
        return sum(bool(r["skipped"]) for r in self.pending)

    def current(self) -> dict[str, Any] | None:
        return self.pending[0] if self.pending else None

    def advance(self, node_id: str, verdict: str) -> None:
        """After a stored verdict on `node_id`: out of the queue (keep, discard) or to its end (skip)."""
        at = next((i for i, r in enumerate(self.pending) if r["node_id"] == node_id), None)
        if at is None:
            return
        row = self.pending.pop(at)
        if verdict == SKIP:
            self.pending.append({**row, "skipped": True})


def run_thresholds(store: Store, run_ids: Iterable[str]) -> dict[str, float]:
    """The scorer thresholds the runs applied, the defaults the Review page starts from: the quality filter's
    threshold when a run had the filter on (`--quality-filter`, and the low_quality rule not switched off),
    nothing when none had it, so the queue never says "random audit of quality >= 4.5" of a run that kept nodes
    whatever their quality (issue 23). Runs with the filter on at different thresholds: the first one's."""
    for run_id in run_ids:
        run = store.get_run(run_id)
        if run is None:
            continue
        rules = run["config"].rules
        if rules.quality_filter and "low_quality" not in (rules.off or ()):
            return {"quality": float(rules.quality_min)}
    return {}


def review_queue(store: Store, run_ids: Iterable[str], *, margin: float = 0.5, audit_size: int = 10,
                 thresholds: dict[str, float] | None = None, seed: int = 0,
                 include_reviewed: bool = False) -> pd.DataFrame:
    """`select_queue` over the runs' nodes, scores and latest reviews in the store."""
    run_ids = list(dict.fromkeys(run_ids))
    nodes, scores = review_frames(store, run_ids)
    return select_queue(nodes, scores, store.reviews(run_ids), margin=margin, audit_size=audit_size,
                        thresholds=thresholds, seed=seed, include_reviewed=include_reviewed)


def describe_reason(reason: str) -> str:
    """A reason as the page says it."""
    if reason in REASON_LABELS:
        return REASON_LABELS[reason]
    kind, _, what = reason.partition(":")
    if kind == "near":
        return f"score near the threshold ({what.replace('>=', ' ≥ ')})"
    if kind == "audit":
        return f"random audit of {what.replace('>=', ' ≥ ')}"
    return reason


def record_review(store: Store, node_id: str, verdict: str, *, reasons: Iterable[str] = (),
                  reviewer: str = "", note: str = "", apply: bool = False) -> dict[str, Any]:
    """Store a person's verdict beside the rules'. With `apply`, a keep or discard also overrides the node's
    status for the data set (`pipeline.override`); the rules' verdict rows are never touched."""
    if verdict not in VERDICTS:
        raise ValueError(f"A review is one of {', '.join(VERDICTS)}, not {verdict!r}.")
    node = store.get_node(node_id)
    if node is None:
        raise KeyError(f"No node {node_id!r} in {store.path}.")
    applied = False
    if apply and verdict != SKIP and node.round > 0:
        override(store, node_id, verdict == KEEP, f"review{' by ' + reviewer if reviewer else ''}"
                 + (f": {note}" if note else ""))
        applied = True
    row = {"node_id": node_id, "run_id": node.run_id, "reviewer": reviewer.strip(), "verdict": verdict,
           "note": note.strip(), "reasons": list(reasons), "applied": applied}
    row["id"] = store.add_review(row)
    return row


# -- agreement ------------------------------------------------------------------------------------------------
def agreement_frame(checks: pd.DataFrame, reviews: list[dict[str, Any]]) -> pd.DataFrame:
    """Per check: on the nodes reviewed for its audit sample (keep or discard), how often the person's verdict
    equals the check's outcome: agree, n, share, the 95% Wilson interval (low, high), the two kinds of
    disagreement, and `too_small` (n < 10 or an interval wider than 0.5)."""
    audited = {r["node_id"] for r in reviews if r["verdict"] in (KEEP, DISCARD)}
    checks = checks[checks["node_id"].isin(audited) & checks["auto"].notna()]
    outcome = dict(zip(zip(checks["node_id"], checks["check"]), checks["auto"]))
    kinds = dict(checks[["check", "kind"]].drop_duplicates("check").itertuples(index=False))
    tally: dict[str, dict[str, int]] = {}
    for r in reviews:
        if r["verdict"] not in (KEEP, DISCARD):
            continue
        for reason in r.get("reasons") or []:
            kind, _, check = reason.partition(":")
            auto = outcome.get((r["node_id"], check))
            if kind != "audit" or auto is None:
                continue
            t = tally.setdefault(check, {"agree": 0, "n": 0, "kd": 0, "dk": 0})
            t["n"] += 1
            t["agree"] += auto == r["verdict"]
            t["kd"] += auto == KEEP and r["verdict"] == DISCARD
            t["dk"] += auto == DISCARD and r["verdict"] == KEEP
    rows = []
    for check in sorted(tally, key=lambda c: (kinds.get(c, "rule") != "rule", c)):
        t = tally[check]
        low, high = wilson_interval(t["agree"], t["n"])
        rows.append({"check": check, "kind": kinds.get(check, "scorer" if parse_scorer_check(check) else "rule"),
                     "agree": t["agree"], "n": t["n"], "share": t["agree"] / t["n"], "low": low, "high": high,
                     "rule keep, person discard": t["kd"], "rule discard, person keep": t["dk"],
                     "too_small": too_small(t["n"], low, high)})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def agreement(store: Store, run_ids: Iterable[str]) -> pd.DataFrame:
    """`agreement_frame` for these runs: each scorer check at the threshold its audit reviews were made with."""
    run_ids = list(dict.fromkeys(run_ids))
    nodes, scores = review_frames(store, run_ids, reviewed_only=True)
    return agreement_of(nodes, scores, store.reviews(run_ids))


def agreement_of(nodes: pd.DataFrame, scores: pd.DataFrame, reviews: list[dict[str, Any]]) -> pd.DataFrame:
    """`agreement` on frames already read (`review_frames`) and the latest reviews."""
    # only reviewed nodes can count, and each node's outcomes depend on its own rows alone: the checks of a few
    # hundred reviewed nodes, not of the whole run
    reviewed = {r["node_id"] for r in reviews if r["verdict"] in (KEEP, DISCARD)}
    nodes = nodes[nodes["id"].isin(reviewed)]
    scores = scores[scores["node_id"].isin(reviewed)]
    thresholds: dict[str, set[float]] = {}
    for r in reviews:
        for reason in r.get("reasons") or []:
            parsed = parse_scorer_check(reason.partition(":")[2])
            if parsed:
                thresholds.setdefault(parsed[0], set()).add(parsed[1])
    frames = [checks_frame(nodes, scores)]
    for metric, values in thresholds.items():
        for t in sorted(values):
            frame = checks_frame(nodes, scores, {metric: t})
            frames.append(frame[frame["kind"] == "scorer"])
    return agreement_frame(pd.concat(frames, ignore_index=True), reviews)


def agreement_note(frame: pd.DataFrame) -> str:
    """One plain sentence under the agreement table."""
    if frame.empty:
        return ("No audited reviews yet: review the random audit sample on the Review page to measure how often "
                "the rules agree with a person.")
    small = frame[frame["too_small"]]
    note = (f"Agreement on the random audit sample only, with 95% Wilson intervals. Too small to say anything "
            f"(n < {MIN_N} or an interval wider than {MAX_WIDTH:g}): ")
    return note + (", ".join(small["check"]) if not small.empty else "none") + "."


# -- what to say where a judge's verdict appears ------------------------------------------------------------
JUDGE_CAVEAT = (
    "An LLM judge rates style more than truth: imitation models that copy a strong model's style were rated "
    "close to it by GPT-4 and by people, yet were no more factual (Gudibande et al. 2023, \"The False Promise of "
    "Imitating Proprietary LLMs\"). Read a win rate with the checked-answer share beside it: the share of "
    "answers whose final number stays the same when the question is answered again.")
NO_CHECKED_ANSWERS = ("No checked answers in these runs: run them with --check-answers to see how many numeric "
                      "answers stay the same when answered again.")


def checked_share(store: Store, run_ids: Iterable[str]) -> pd.DataFrame | None:
    """The checked-answer share per run and round (`evolab.engine.checking.consistent_share`), or None when these
    runs checked no answers."""
    frame = consistent_share(store, list(run_ids))
    if frame is None or frame.empty:
        return None
    return frame


def checked_share_line(frame: pd.DataFrame | None, label: str, run_id: str, rounds: Iterable[int] | None = None) -> str:
    """"round 2: 7 of 9 checked answers consistent (78%), 3 not checkable" for one side of a comparison."""
    if frame is None:
        return f"{label}: no checked answers"
    rows = frame[frame["run_id"] == run_id]
    if rounds is not None:
        rows = rows[rows["round"].isin(list(rounds))]
    checked, consistent = int(rows["checked"].sum()), int(rows["consistent"].sum())
    not_checkable = int(rows["not_checkable"].sum())
    if checked == 0:
        return f"{label}: no checked answers" + (f" ({not_checkable} not checkable)" if not_checkable else "")
    return (f"{label}: {consistent} of {checked} checked answers consistent ({consistent / checked:.0%})"
            + (f", {not_checkable} not checkable" if not_checkable else ""))


# -- the command line ---------------------------------------------------------------------------------------
def judge_footer(store: Store, rows: list[dict[str, Any]], sides: list[tuple[str, str, list[int] | None]]) -> list[str]:
    """What the CLI prints under a win rate: the position swap's counts, the checked-answer share of each side
    ((label, run id, rounds or None)), and what an LLM judge rates."""

    swap = position_swap_counts(rows)
    lines = [f"position swap: the same verdict in both orders for {swap['same']} of {swap['both_read']} pair(s), "
             f"changed by the order for {swap['flipped']}, unreadable in an order for {swap['unread']}"]
    checked = checked_share(store, list(dict.fromkeys(run_id for _, run_id, _ in sides)))
    if checked is None:
        lines.append("checked answers: none in these runs (run them with --check-answers, or `check`)")
    else:
        lines += ["checked answers: " + checked_share_line(checked, label, run_id, rounds)
                  for label, run_id, rounds in sides]
    return lines + ["note: " + JUDGE_CAVEAT]


def agreement_text(store: Store, run_ids: list[str]) -> str:
    """The agreement table as plain text (`python -m evolab agreement`)."""
    frame = agreement(store, run_ids)
    if frame.empty:
        return agreement_note(frame)
    shown = frame.assign(share=frame["share"].map("{:.0%}".format),
                         interval=[f"{lo:.0%}-{hi:.0%}" for lo, hi in zip(frame["low"], frame["high"])],
                         too_small=frame["too_small"].map({True: "too small", False: ""}))
    columns = ["check", "kind", "agree", "n", "share", "interval", "rule keep, person discard",
               "rule discard, person keep", "too_small"]
    return shown[columns].to_string(index=False) + "\n" + agreement_note(frame)
