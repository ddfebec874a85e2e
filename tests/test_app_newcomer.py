"""Issue 23, what a newcomer reads: verdicts one row per rule, the Runs page's ETA and activity, the estimate's time,
and a drift axis that stays inside its scale. Pure functions, no browser (tests/test_browser_newcomer.py walks the
pages)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from evolab.analysis import viz
from evolab.app import support as app_support
from evolab.engine.estimate import assumed_timing, estimate_run, observed_timing
from evolab.schema import LLMCall, RunConfig, Seed

SEEDS = [Seed("Explain compound interest with an example."), Seed("연금저축과 IRP의 세액공제 한도를 비교해 주세요.")]


def verdicts(*rows):
    return pd.DataFrame([dict(zip(("rule", "passed", "detail", "judge"), r)) for r in rows])


def test_a_rule_with_a_cheap_check_and_a_judge_is_one_row_and_the_deciding_rule_comes_first():
    stored = verdicts(("truncated", True, "the reply ended on its own (stop)", "heuristic"),
                      ("no_new_information", True, "similarity to parent 0.09", "heuristic"),
                      ("prompt_leak", True, "no words of the evolving prompt", "heuristic"),
                      ("quotes_price", False, "quotes a price", "heuristic"),  # a plugin's rule: any id shows
                      ("refusal", True, "no refusal form", "heuristic"),
                      ("no_new_information", False, "judge says Equal: '{\"verdict\": \"Equal\"}'", "smollm2"))
    rows = app_support.verdict_rows(stored, "eliminated", "no_new_information")
    assert list(rows["rule"]).count("no_new_information") == 1 and len(rows) == 5
    first = rows.iloc[0]
    assert first["rule"] == "no_new_information" and first["verdict"] == "✗\u00a0failed\u00a0◀\u00a0decided"
    assert first["found"] == ("cheap check ✓ similarity to parent 0.09 → judge smollm2 ✗ judge says Equal: "
                              "'{\"verdict\": \"Equal\"}'")
    # the other failure next (not marked as deciding), then the passed rules in the cascade's order
    assert list(rows["rule"]) == ["no_new_information", "quotes_price", "truncated", "prompt_leak", "refusal"]
    words = [v.replace("\u00a0", " ") for v in rows["verdict"]]
    assert words[1:] == ["✗ failed", "✓ passed", "✓ passed", "✓ passed"]
    assert list(rows["outcome"]) == [False, False, True, True, True]


def test_a_kept_node_has_no_deciding_rule_and_an_unreadable_judge_is_neither_pass_nor_fail():
    stored = verdicts(("prompt_leak", True, "no words", "heuristic"), ("no_new_information", None, "unreadable", "m"))
    kept = app_support.verdict_rows(stored, "kept", None)
    assert not any(v.endswith(app_support.DECIDED_MARK) for v in kept["verdict"])
    failed = app_support.verdict_rows(stored, "failed", "unreadable")
    assert [v.replace("\u00a0", " ") for v in failed["verdict"]] == ["? unreadable", "✓ passed"]
    assert app_support.verdict_rows(verdicts(), "seed", None).empty


def test_eta_comes_with_a_range_and_never_reads_zero_while_work_remains():
    # 4 steps in 20 s, 6 to go: 30 s expected, a range around it
    low, high = app_support.eta_interval(4, 6, 20.0)
    assert low < 30 < high and math.isfinite(high)
    info = {"running": True, "remaining": 6, "eta_s": 30.0, "eta_range": (low, high), "steps_seen": 4}
    assert app_support.eta_text(info).startswith("30 s (")
    assert app_support.eta_text({**info, "eta_s": 0.2, "eta_range": (0.1, 0.4)}).startswith("1 s")  # not "0 s"
    assert app_support.eta_text({**info, "remaining": 0, "eta_s": 0.0}) == "finishing"
    assert app_support.eta_text({**info, "eta_s": None, "eta_range": None}) == "after the first step"
    assert app_support.eta_text({**info, "running": False}) == "–"
    # one step so far: a rough figure, said to be rough (its 95% range would span seconds to an hour)
    one = {**info, "eta_range": app_support.eta_interval(1, 6, 5.0), "steps_seen": 1}
    assert app_support.eta_text(one) == "about 30 s (rough: 1 step so far)"
    assert app_support.eta_interval(1, 6, 5.0)[1] > 60 * 30  # 1 step in 5 s, 6 to go: up to about 38 minutes


def test_the_activity_line_counts_the_calls_the_run_made_lately():
    now = 1_000.0
    calls = [LLMCall("evolve", "m", 100, 50, latency_s=1.0, created_at=now - 5),
             LLMCall("respond", "m", 80, 120, latency_s=2.0, created_at=now - 3),
             LLMCall("respond", "m", 80, 120, latency_s=2.0, created_at=now - 2, cached=True),  # took no time
             LLMCall("evolve", "m", 100, 50, latency_s=1.0, created_at=now - 300)]  # long ago
    act = app_support.recent_activity(calls, now, since=now - 10)  # the worker started 10 s ago
    assert act["by_purpose"] == {"evolve": 1, "respond": 1} and act["calls_per_min"] == pytest.approx(12.0)
    text = app_support.activity_text(act)
    assert text.startswith("Now: 12 calls/min · 2,100 tokens/min over the last 10 s") and "last call 3 s ago" in text
    assert text.endswith(" · 1 answered from the cache")
    quiet = app_support.recent_activity(calls[3:], now)
    assert app_support.activity_text(quiet).startswith("Now: no call finished in the last minute")


def calls_of(n: int, in_flight: int, service_s: float = 0.5, per_token_s: float = 0.01) -> list[LLMCall]:
    """n calls answered one at a time by a server but sent `in_flight` at once: each waits behind the others."""
    out, t = [], 100.0
    for i in range(n):
        tokens = 20 + 10 * (i % 7)
        service = service_s + per_token_s * tokens
        t += service
        out.append(LLMCall("respond", "smollm2", 50, tokens, latency_s=service * in_flight, created_at=t))
    return out


def test_the_estimate_gives_time_from_stored_calls_or_a_stated_assumption():
    local = RunConfig(model="smollm2", rounds=2, concurrency=4)
    assumed = estimate_run(SEEDS, local)
    assert "assumed for the embedded model" in assumed["time_text"]
    assert 0 < assumed["low"]["seconds"] <= assumed["expected"]["seconds"] <= assumed["high"]["seconds"]
    # a single-slot server seen with 4 calls in flight: latencies are 4x the service time; the fit takes that out
    timing = observed_timing(calls_of(40, in_flight=4), local)
    assert timing.overhead_s == pytest.approx(0.5, rel=0.15)
    assert timing.s_per_output_token == pytest.approx(0.01, rel=0.15)
    est = estimate_run(SEEDS, local, timing)
    expected = est["expected"]
    serial = expected["calls"] * 0.5 + expected["completion_tokens"] * 0.01
    assert expected["seconds"] == pytest.approx(serial, rel=0.2)
    assert est["time_text"].startswith("observed on 40 stored calls of smollm2")
    # too few calls: no fit; an rpm cap bounds the time from below
    assert observed_timing(calls_of(3, 1), local) is None
    capped = estimate_run(SEEDS, RunConfig(model="gpt-4o-mini", base_url="http://x/v1", rounds=2, rpm=6))
    assert capped["expected"]["seconds"] >= capped["expected"]["calls"] * 10 - 1e-6
    assert "assumed for a hosted model" in assumed_timing(capped_config := RunConfig(base_url="http://x/v1")).describe(
        capped_config)


def test_the_estimate_table_keeps_every_column_as_text():
    frame = app_support.estimate_frame(estimate_run(SEEDS, RunConfig(model="gpt-4o-mini", base_url="http://x/v1")))
    assert list(frame.columns) == ["case", "calls", "tokens", "time", "cost", "as batch"]
    assert all(c.startswith("$") for c in frame["cost"]) and "–" not in set(frame["time"])


def test_a_drift_axis_on_a_scale_never_runs_past_it():
    frame = pd.DataFrame({"round": [0, 1], "operation": ["all", "all"], "difficulty_mean": [10.0, 10.0],
                          "difficulty_lo": [9.2, math.nan], "difficulty_hi": [10.0, math.nan], "difficulty_n": [3, 1]})
    low, high = viz.drift_figure(frame, "difficulty").layout.yaxis.range
    assert 1 <= low < 9.2 and high == 10
    assert viz.scale_range(frame, "cx_index") is None  # no scale: plotly's own range


def test_the_cli_estimate_prints_the_time_and_its_basis():
    from evolab.engine.estimate import format_estimate, format_seconds

    text = format_estimate(estimate_run(SEEDS, RunConfig(model="smollm2", rounds=4)))
    assert "Time: assumed for the embedded model" in text and "time" in text.splitlines()[4]
    assert [format_seconds(s) for s in (0.2, 45, 720, 4 * 3600)] == ["1 s", "45 s", "12 min", "4.0 h"]
