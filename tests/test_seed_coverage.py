"""Coverage of a seed set (evolab.seeds.craft.coverage_frame) against hand-counted cells, and its heat map."""
from __future__ import annotations

import pytest

from evolab.analysis.viz import coverage_figure, is_empty_figure
from evolab.schema import Seed
from evolab.seeds import craft as seedcraft

SEEDS = [
    Seed("a", skill="math", difficulty=2), Seed("b", skill="math", difficulty=2), Seed("c", skill="math", difficulty=9),
    Seed("d", skill="writing", difficulty=2.4),  # rounds to 2
    Seed("e", skill="writing", difficulty=6.5),  # rounds half up to 7
    Seed("f", skill="회계", difficulty=10), Seed("g", skill="회계", difficulty=10), Seed("h", skill="회계", difficulty=10),
    Seed("i", skill="writing"),  # no difficulty
    Seed("j", difficulty=0),  # no skill; 0 is below the scale: the first column
]


def cell(frame, skill, difficulty):
    row = frame[(frame["skill"] == skill) & (frame["difficulty"] == difficulty)]
    assert len(row) == 1
    return int(row["count"].iloc[0]), row["state"].iloc[0]


def test_counts_by_hand():
    frame = seedcraft.coverage_frame(SEEDS, thin=2)
    assert list(frame["skill"].cat.categories) == ["math", "writing", "회계", seedcraft.NO_SKILL]
    assert list(frame["difficulty"].cat.categories) == [str(d) for d in range(1, 11)] + [seedcraft.NO_DIFFICULTY]
    assert len(frame) == 4 * 11 and frame["count"].sum() == len(SEEDS)
    assert cell(frame, "math", "2") == (2, "ok")
    assert cell(frame, "math", "9") == (1, "thin")
    assert cell(frame, "math", "5") == (0, "empty")
    assert cell(frame, "writing", "2") == (1, "thin")
    assert cell(frame, "writing", "7") == (1, "thin")
    assert cell(frame, "writing", seedcraft.NO_DIFFICULTY) == (1, "thin")
    assert cell(frame, "회계", "10") == (3, "ok")
    assert cell(frame, seedcraft.NO_SKILL, "1") == (1, "thin")


def test_the_thin_threshold_is_the_users():
    frame = seedcraft.coverage_frame(SEEDS, thin=4)
    assert cell(frame, "회계", "10") == (3, "thin") and cell(frame, "math", "2") == (2, "thin")
    frame = seedcraft.coverage_frame(SEEDS, thin=1)
    assert set(frame.loc[frame["count"] > 0, "state"]) == {"ok"}


def test_bins():
    assert seedcraft.difficulty_bins(5) == ["1-2", "3-4", "5-6", "7-8", "9-10"]
    assert seedcraft.difficulty_bins(3) == ["1-4", "5-7", "8-10"]
    frame = seedcraft.coverage_frame(SEEDS, bins=5, thin=2)
    assert cell(frame, "math", "1-2") == (2, "ok") and cell(frame, "math", "9-10") == (1, "thin")
    assert cell(frame, "writing", "7-8") == (1, "thin") and cell(frame, "회계", "9-10") == (3, "ok")
    with pytest.raises(ValueError):
        seedcraft.difficulty_bins(0)


def test_gaps_are_real_cells_emptiest_first():
    g = seedcraft.gaps(seedcraft.coverage_frame(SEEDS, thin=2))
    assert seedcraft.NO_SKILL not in set(g["skill"]) and seedcraft.NO_DIFFICULTY not in set(g["difficulty"])
    assert list(g["count"]) == sorted(g["count"]) and g["count"].iloc[0] == 0
    assert len(g) == 3 * 10 - 2  # every real cell but the two "ok" ones


def test_a_set_with_no_tags_at_all():
    frame = seedcraft.coverage_frame([Seed("x"), Seed("y")])
    assert list(frame["skill"].cat.categories) == [seedcraft.NO_SKILL]
    assert cell(frame, seedcraft.NO_SKILL, seedcraft.NO_DIFFICULTY) == (2, "ok")
    assert seedcraft.gaps(frame).empty


def test_heat_map_marks_empty_and_thin_cells():
    frame = seedcraft.coverage_frame(SEEDS, thin=2)
    fig = coverage_figure(frame, thin=2)
    heat, empty, thin = fig.data
    assert heat.type == "heatmap"
    assert list(fig.layout.yaxis.ticktext) == ["math", "writing", "회계", seedcraft.NO_SKILL]
    assert heat.z[0][1] == 2 and heat.z[2][9] == 3  # math x 2, 회계 x 10
    assert empty.name == "empty" and len(empty.x) == (frame["state"] == "empty").sum()
    assert thin.name == "thin (< 2)" and {tuple(c) for c in thin.customdata} == {
        ("math", "9"), ("writing", "2"), ("writing", "7"), ("writing", seedcraft.NO_DIFFICULTY), (seedcraft.NO_SKILL, "1")}
    # each mark sits in its own cell's corner, off the count printed at the cell's centre
    columns, skills = list(fig.layout.xaxis.ticktext), list(fig.layout.yaxis.ticktext)
    for marks in (empty, thin):
        for x, y, (skill, difficulty) in zip(marks.x, marks.y, marks.customdata):
            dx, dy = x - columns.index(difficulty), y - skills.index(skill)
            assert 0.2 <= abs(dx) < 0.5 and 0.2 <= abs(dy) < 0.5, (skill, difficulty, dx, dy)
    assert is_empty_figure(coverage_figure(seedcraft.coverage_frame([])))
