"""What every seed reader shares: the fields and the column names accepted for them, the size cap, the error,
and reading a file from disk (a regular file only, never more than the cap)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

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


def over_limit(size: int, name: str, limit: int = MAX_BYTES) -> SeedFileError:
    return SeedFileError(name, None, f"{size / 2**20:.1f} MB is over the {limit // 2**20} MB limit")


def _not_regular(mode: int, name: str) -> SeedFileError | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return SeedFileError(name, None, "is a folder, not a file")
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    return SeedFileError(name, None, f"is {kind}, not a regular file; give a seed file")


def read_file(path: str | os.PathLike, name: str | None = None, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file, at most `limit` of them. A device (/dev/zero), a FIFO or a socket is refused,
    and the cap holds while reading (a stat's size says nothing about a device, or a file that grows).
    Raises SeedFileError naming `name` (default: the path) for anything wrong."""
    name = str(path) if name is None else name
    try:
        before = os.stat(path)  # refuse a device or a FIFO before opening it (opening one may block)
        problem = _not_regular(before.st_mode, name)
        if problem is None and before.st_size > limit:  # a regular file that is too big: never read it
            problem = over_limit(before.st_size, name, limit)
        if problem is not None:
            raise problem
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            problem = _not_regular(os.fstat(f.fileno()).st_mode, name)  # what was opened, not what was stat'ed
            if problem is not None:
                raise problem
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise SeedFileError(name, None, "no such file") from None
    except OSError as e:
        raise SeedFileError(name, None, f"cannot read it ({e.strerror or e})") from None
    if len(data) > limit:
        raise SeedFileError(name, None, f"is over the {limit // 2**20} MB limit (it grew while being read)")
    return data


def inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with every symlink and `..` resolved, is `folder` or lies under it (resolved too)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(folder)))
    except (OSError, ValueError):
        return False
