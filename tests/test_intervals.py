"""Confidence intervals that respect the scale: difficulty lives on 1-10 and quality on 0-5, so neither a
mean nor its interval may leave them; with fewer than 3 values there is no interval at all."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolab.analysis import frames as analysis
from evolab.analysis import viz


@pytest.mark.parametrize("values", [[7.0], [1.0, 10.0]])
def test_one_or_two_values_have_a_mean_and_no_interval(values):
    mean, lo, hi, n = analysis.mean_ci(values, scale=(1, 10))
    assert mean == pytest.approx(sum(values) / len(values)) and n == len(values)
    assert math.isnan(lo) and math.isnan(hi)


def test_three_values_far_apart_stay_on_the_scale():
    mean, lo, hi, n = analysis.mean_ci([1, 10, 10], scale=(1, 10))
    assert n == 3 and mean == 7
    assert 1 <= lo < mean < hi <= 10
    # the unbounded t-interval of the same values leaves the scale at both ends
    _, t_lo, t_hi, _ = analysis.mean_ci([1, 10, 10])
    assert t_lo < 1 and t_hi > 10


def test_wilson_interval_by_hand():
    # values 2, 4, 6, 8 on 0-10: mean 5, sd 2.582, se 1.291; p = 0.5, se_p = 0.1291, n_eff = 15
    # t(0.975, 3) = 3.182446; centre = 0.5; half = t * sqrt(se_p^2 + t^2 / (4 n_eff^2)) / (1 + t^2 / n_eff)
    t, se_p, n_eff = 3.182446, 2.5819889 / 2 / 10, 0.25 / (2.5819889 / 2 / 10) ** 2
    half = t * math.sqrt(se_p ** 2 + t * t / (4 * n_eff ** 2)) / (1 + t * t / n_eff)
    mean, lo, hi, n = analysis.mean_ci([2, 4, 6, 8], scale=(0, 10))
    assert (mean, n) == (5, 4)
    assert lo == pytest.approx(10 * (0.5 - half), abs=1e-4) and hi == pytest.approx(10 * (0.5 + half), abs=1e-4)


@pytest.mark.parametrize("values, end", [([10, 10, 10], 10), ([1, 1, 1, 1], 1)])
def test_all_values_at_an_end_of_the_scale(values, end):
    mean, lo, hi, _ = analysis.mean_ci(values, scale=(1, 10))
    assert mean == lo == hi == end


def test_near_an_end_the_interval_leans_inwards():
    mean, lo, hi, _ = analysis.mean_ci([10, 10, 9, 10, 10], scale=(1, 10))
    assert hi <= 10 and mean - lo > hi - mean


def test_away_from_the_ends_with_many_values_it_is_the_t_interval():
    values = [4, 5, 6, 5, 5, 4, 6, 5] * 10
    _, lo, hi, _ = analysis.mean_ci(values, scale=(1, 10))
    _, t_lo, t_hi, _ = analysis.mean_ci(values)
    assert lo == pytest.approx(t_lo, abs=0.02) and hi == pytest.approx(t_hi, abs=0.02)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=40))
def test_difficulty_intervals_never_leave_1_to_10(values):
    mean, lo, hi, n = analysis.mean_ci(values, scale=analysis.metric_scale("difficulty"))
    if n < 3:
        assert math.isnan(lo) and math.isnan(hi)
    else:
        assert 1 <= lo <= mean <= hi <= 10


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10)), min_size=3, max_size=30))
def test_change_intervals_never_leave_minus_9_to_9(pairs):
    deltas = [c - p for p, c in pairs]
    _, lo, hi, _ = analysis.mean_ci(deltas, scale=analysis.delta_scale("difficulty"))
    assert -9 <= lo <= hi <= 9


def _frame(values_by_round):
    rows = [{"id": f"n{r}-{i}", "round": r, "operation": "deepen", "status": "kept", "rule": None,
             "difficulty": v} for r, vals in values_by_round.items() for i, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_drift_figure_draws_no_whiskers_for_two_values_and_says_so():
    nodes = _frame({1: [1.0, 10.0], 2: [1.0, 10.0, 10.0]})
    frame = analysis.round_operation_frame(nodes, metrics=("difficulty",))
    fig = viz.drift_figure(frame, "difficulty")
    trace = fig.data[0]
    up, down = list(trace.error_y.array), list(trace.error_y.arrayminus)
    assert math.isnan(up[0]) and math.isnan(down[0])  # round 1: n = 2
    assert trace.y[1] + up[1] <= 10 and trace.y[1] - down[1] >= 1  # round 2: inside the scale
    labels = [row[2] for row in trace.customdata]
    assert labels[0] == "no interval: too few values" and labels[1].startswith("95% CI ")


def test_round_frame_intervals_stay_on_the_quality_scale():
    nodes = _frame({1: [0.0, 5.0, 5.0]}).rename(columns={"difficulty": "quality"})
    frame = analysis.round_frame(nodes, metrics=("quality",))
    assert 0 <= frame.loc[0, "quality_lo"] <= frame.loc[0, "quality_hi"] <= 5
