"""Training-data exports: Alpaca JSON, ShareGPT JSON, OpenAI chat JSONL, and lineage JSONL.

"kept" exports the final data set the paper trains on: the seeds (round 0) with their answers plus
every kept evolved instruction. The lineage format keeps every field of every node for analysis.
"""
from __future__ import annotations

import io
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from evolab.engine.checking import UNCHECKED, check_statuses, parse_checked
from evolab.schema import KEPT, SEED, Node
from evolab.store import Store

FORMATS = ("alpaca", "sharegpt", "openai", "lineage")


def iter_selected(store: Store, run_id: str, *, status: str = "kept", include_seeds: bool = True,
                  rules: Iterable[str] | None = None, min_scores: dict[str, float] | None = None,
                  checked: Iterable[str] | None = None) -> Iterator[tuple[Node, dict[str, float | None]]]:
    """(node, its scores) to export, streamed from the store a batch at a time, so a run of any size
    exports in bounded memory. status: "kept" (kept + answered seeds) or "all"; `rules` keeps only
    eliminated nodes with those rules (plus kept ones when status is all); `min_scores` e.g.
    {"quality": 4.5}; `checked` keeps nodes whose answer check (evolab/engine/checking.py) is one of these
    statuses ("unchecked": none)."""
    if status not in ("kept", "all"):
        raise ValueError(f"status must be 'kept' or 'all', not {status!r}")
    wanted_rules = set(rules or ())
    check_filter = None
    if checked:
        wanted_checks, statuses = set(parse_checked(checked)), check_statuses(store, run_id)
        check_filter = lambda n: statuses.get(n.id, UNCHECKED) in wanted_checks  # noqa: E731
    for nodes, scores in store.iter_nodes_with_scores(run_id):
        for n in nodes:
            if status == "kept" and not ((n.status == KEPT or (include_seeds and n.status == SEED)) and n.response):
                continue
            if wanted_rules and n.rule is not None and n.rule not in wanted_rules:
                continue
            own = {m: v for m, v in scores.get(n.id, {}).items() if not m.startswith("rule:")}
            if min_scores and not all(own.get(m) is not None and own[m] >= v for m, v in min_scores.items()):
                continue
            if check_filter is not None and not check_filter(n):
                continue
            yield n, own


def select_nodes(store: Store, run_id: str, **select: Any) -> list[Node]:
    """The nodes `iter_selected` streams, as a list (for counts and small runs)."""
    return [n for n, _ in iter_selected(store, run_id, **select)]


def count_selected(store: Store, run_id: str, **select: Any) -> int:
    return sum(1 for _ in iter_selected(store, run_id, **select))


def node_scores(store: Store, run_id: str) -> dict[str, dict[str, float | None]]:
    """node id -> {metric: value}; rule verdicts (`rule:*`) left out."""
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    for s in store.scores(run_id):
        if not s.metric.startswith("rule:"):
            out[s.node_id][s.metric] = s.value
    return out


LINEAGE_KEYS = ["id", "parent_id", "root_id", "round", "operation", "instruction", "input", "response", "status",
                "rule", "detail", "skill", "seed_difficulty", "language", "template", "template_version"]


def record(n: Node, fmt: str, *, scores: dict[str, float | None] | None = None, model: str | None = None,
           run_id: str | None = None, answer_check: str | None = None) -> dict[str, Any]:
    """One node as one record of `fmt`; lineage records carry the answer check too (evolab/engine/checking.py, None:
    never checked)."""
    if fmt == "alpaca":
        return {"instruction": n.instruction, "input": n.input or "", "output": n.response or ""}
    if fmt == "sharegpt":
        return {"id": n.id, "conversations": [{"from": "human", "value": _prompt(n)},
                                              {"from": "gpt", "value": n.response or ""}]}
    if fmt == "openai":
        return {"messages": [{"role": "user", "content": _prompt(n)},
                             {"role": "assistant", "content": n.response or ""}]}
    if fmt == "lineage":
        return {**{k: getattr(n, k) for k in LINEAGE_KEYS}, "scores": scores or {}, "model": model,
                "run_id": run_id or n.run_id, "answer_check": answer_check}
    raise ValueError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")


def to_records(store: Store, run_id: str, nodes: list[Node], fmt: str) -> list[dict[str, Any]]:
    model = _run_model(store, run_id)
    scores = node_scores(store, run_id) if fmt == "lineage" else {}
    checks = _answer_checks(store, run_id, fmt)
    return [record(n, fmt, scores=scores.get(n.id, {}), model=model, run_id=run_id, answer_check=checks.get(n.id))
            for n in nodes]


def _answer_checks(store: Store, run_id: str, fmt: str) -> dict[str, str]:
    """node id -> answer check status, for lineage records."""
    if fmt != "lineage":
        return {}

    return check_statuses(store, run_id)


def _run_model(store: Store, run_id: str) -> str | None:
    run = store.get_run(run_id)
    return run["config"].model if run else None


def _prompt(n: Node) -> str:
    return n.instruction if not n.input else f"{n.instruction}\n\n{n.input}"


def dumps(records: list[dict[str, Any]], fmt: str) -> str:
    """Alpaca and ShareGPT are JSON arrays; OpenAI chat and lineage are JSON Lines."""
    out = io.StringIO()
    _write_records(out, records, fmt)
    return out.getvalue()


def _write_records(out: TextIO, records: Iterable[dict[str, Any]], fmt: str) -> int:
    """Write records one at a time: JSON Lines, or a JSON array laid out as json.dumps(indent=2) would."""
    if fmt in ("openai", "lineage"):
        count = 0
        for r in records:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
            count += 1
        return count
    count = 0
    for r in records:
        out.write("[\n  " if count == 0 else ",\n  ")
        out.write(json.dumps(r, ensure_ascii=False, indent=2).replace("\n", "\n  "))
        count += 1
    out.write("\n]\n" if count else "[]\n")
    return count


def write_export(store: Store, run_id: str, fmt: str, out: str | Path | TextIO, **select: Any) -> int:
    """Stream the export to a path or an open text file, a record at a time; returns how many records.
    A path is written to a temporary file beside it and renamed, so a failure never leaves half a file."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")
    model = _run_model(store, run_id)
    checks = _answer_checks(store, run_id, fmt)
    records = (record(n, fmt, scores=scores, model=model, run_id=run_id, answer_check=checks.get(n.id))
               for n, scores in iter_selected(store, run_id, **select))
    if not isinstance(out, (str, Path)):
        return _write_records(out, records, fmt)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            count = _write_records(f, records, fmt)
        tmp.replace(path)
    except OSError as e:  # name the path the caller gave, not the hidden temporary file
        raise OSError(e.errno, f"cannot write the export ({e.strerror or e})", str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return count


def export_run(store: Store, run_id: str, fmt: str, out: str | Path | None = None, **select: Any) -> str:
    """Write (when `out` is given) and return the export text. For large runs use `write_export`,
    which never holds the whole export in memory."""
    buffer = io.StringIO()
    write_export(store, run_id, fmt, buffer, **select)
    text = buffer.getvalue()
    if out is not None:
        Path(out).write_text(text, encoding="utf-8")
    return text
