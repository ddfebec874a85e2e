"""The difference between two versions of a seed set: rows added, removed and changed (with the fields).

Seeds have no ids, so rows are matched in three passes: identical rows first (unchanged, wherever they
moved), then rows with the same instruction (their input, skill or difficulty changed), then the most
similar remaining instructions by ROUGE-L (at least 0.5: an edited instruction). Whatever is left is removed
(old side) or added (new side).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from evolab.embeddings.novelty import rouge_l
from evolab.schema import Seed

DIFF_FIELDS = ("instruction", "input", "skill", "difficulty")
EDITED_INSTRUCTION_MIN_ROUGE = 0.5  # below this two instructions are different seeds, not an edit


@dataclass
class RowChange:
    change: str  # "added", "removed" or "changed"
    old_row: int | None  # 1-based row in the old version
    new_row: int | None  # 1-based row in the new version
    fields: tuple[str, ...] = ()  # the fields that differ (changed rows)
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None


@dataclass
class SeedSetDiff:
    changes: list[RowChange] = field(default_factory=list)
    unchanged: int = 0

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    @property
    def summary(self) -> str:
        return (f"{self.count('added')} added, {self.count('removed')} removed, {self.count('changed')} changed, "
                f"{self.unchanged} unchanged")

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per change (for a table): change, rows, fields, and each field's old -> new value."""
        out = []
        for c in self.changes:
            row: dict[str, Any] = {"change": c.change, "old row": c.old_row, "new row": c.new_row,
                                   "fields": ", ".join(c.fields)}
            for name in DIFF_FIELDS:
                old = None if c.old is None else c.old.get(name)
                new = None if c.new is None else c.new.get(name)
                if c.change == "changed" and name in c.fields:
                    row[name] = f"{_show(old)} → {_show(new)}"
                else:
                    row[name] = _show(old if c.change == "removed" else new)
            out.append(row)
        return out


def _show(value: Any) -> str:
    return "" if value is None else str(value)


def _fields(seed: Seed) -> dict[str, Any]:
    return {name: getattr(seed, name) for name in DIFF_FIELDS}


def _key(seed: Seed) -> tuple:
    return tuple(_fields(seed).values())


def diff_seed_sets(old: Sequence[Seed], new: Sequence[Seed]) -> SeedSetDiff:
    """What changed from `old` to `new` (changes ordered by row: new rows first, then removed ones)."""
    old_left = dict(enumerate(old))
    new_left = dict(enumerate(new))
    diff = SeedSetDiff()
    # 1. identical rows, matched in order
    by_key: dict[tuple, list[int]] = {}
    for i, s in old_left.items():
        by_key.setdefault(_key(s), []).append(i)
    for j, s in list(new_left.items()):
        match = by_key.get(_key(s))
        if match:
            del old_left[match.pop(0)], new_left[j]
            diff.unchanged += 1
    pairs: list[tuple[int, int]] = []
    # 2. the same instruction, other fields changed
    by_instruction: dict[str, list[int]] = {}
    for i, s in old_left.items():
        by_instruction.setdefault(s.instruction, []).append(i)
    for j, s in list(new_left.items()):
        match = by_instruction.get(s.instruction)
        if match:
            i = match.pop(0)
            pairs.append((i, j))
            del old_left[i], new_left[j]
    # 3. edited instructions: the most similar pairs first
    candidates = sorted(((rouge_l(old_left[i].instruction, new_left[j].instruction), i, j)
                         for i in old_left for j in new_left), reverse=True)
    for score, i, j in candidates:
        if score < EDITED_INSTRUCTION_MIN_ROUGE:
            break
        if i in old_left and j in new_left:
            pairs.append((i, j))
            del old_left[i], new_left[j]
    for i, j in pairs:
        a, b = _fields(old[i]), _fields(new[j])
        diff.changes.append(RowChange("changed", i + 1, j + 1, tuple(k for k in DIFF_FIELDS if a[k] != b[k]), a, b))
    diff.changes += [RowChange("added", None, j + 1, new=_fields(s)) for j, s in new_left.items()]
    diff.changes += [RowChange("removed", i + 1, None, old=_fields(s)) for i, s in old_left.items()]
    diff.changes.sort(key=lambda c: (c.new_row is None, c.new_row or 0, c.old_row or 0))
    return diff


def load_saved_set(store: Any, name: str, version: int | None = None) -> list[Seed]:
    """A saved seed set (its latest version, or `version`); KeyError whose message lists what there is."""
    if name not in store.seed_sets():
        names = store.seed_sets()
        raise KeyError(f"No seed set named {name!r} in {store.path}; "
                       + (f"saved sets: {', '.join(names)}" if names else "none is saved yet (Seeds page: Save)"))
    if version is None:
        return store.load_seed_set(name)
    versions = [v["version"] for v in store.seed_set_versions(name)]
    if version not in versions:
        raise KeyError(f"Seed set {name!r} has no version {version}; its versions: "
                       f"{', '.join(map(str, sorted(versions)))}")
    return store.load_seed_set_version(name, version)
