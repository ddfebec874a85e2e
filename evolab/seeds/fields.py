"""What every seed reader shares: the fields and the column names accepted for them, the size cap, the error."""
from __future__ import annotations

MAX_BYTES = 50 * 1024 * 1024  # a seed file is read whole into memory; bigger is a mistake or needs a sample

# Field name (lower-cased, trimmed) -> the names accepted for it, the real one first. An alias is used only
# when the real name is absent, so {"instruction": ..., "prompt": ...} is not ambiguous.
# ("category" is what databricks-dolly-15k calls the skill.)
FIELD_NAMES = {
    "instruction": ("instruction", "prompt"),
    "input": ("input", "context"),
    "skill": ("skill", "category"),
    "difficulty": ("difficulty",),
}


class SeedFileError(ValueError):
    """A seed file (or table) that cannot be used; str() is the message to show a person."""

    def __init__(self, path: str, line: int | None, problem: str, unit: str = "line"):
        # All fields go to args so the error pickles (multiprocessing, Streamlit caching).
        super().__init__(str(path), line, problem, unit)
        self.path, self.line, self.problem, self.unit = str(path), line, problem, unit

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, {self.unit} {self.line}"
        return f"{where}: {self.problem}"
