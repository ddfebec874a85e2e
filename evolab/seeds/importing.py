"""Importing seeds from tables with other column names, and from Hugging Face-style datasets on disk.

- A column mapping says which column holds each seed field: `parse_mapping("instruction=question,
  input=context")`. Mapped fields use the named column; the others keep load_seeds' usual names.
- Datasets on disk: a `.parquet` file, an `.arrow` file (Arrow IPC file or stream, as `datasets` writes
  them), or a folder written by `datasets.Dataset.save_to_disk` (its `.arrow` shards, listed in
  `state.json`). Read with pyarrow, not the `datasets` package. ClassLabel columns (integers with names in
  the dataset's features) are read as their names, so `category` gives "open_qa", not 3.

Every problem becomes a `SeedFileError` (evolab.seeds.files) naming the file and what is wrong.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from evolab.seeds.fields import FIELD_NAMES, MAX_BYTES, SeedFileError, inside, over_limit, read_file

SEED_FIELDS = ("instruction", "input", "skill", "difficulty")
DATASET_SUFFIXES = (".parquet", ".arrow")


def parse_mapping(text: str | None) -> dict[str, str]:
    """"instruction=question,input=context" -> {"instruction": "question", "input": "context"}.
    Raises ValueError (the message says what is wrong) for a bad entry or an unknown field."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        field, sep, column = part.partition("=")
        field, column = field.strip().lower(), column.strip()
        if not sep or not column:
            raise ValueError(f"--map entry {part.strip()!r} should be FIELD=COLUMN, e.g. instruction=question")
        if field not in SEED_FIELDS:
            raise ValueError(f"--map: unknown seed field {field!r}; the fields are {', '.join(SEED_FIELDS)}")
        if field in mapping:
            raise ValueError(f"--map names {field!r} twice")
        mapping[field] = column
    return mapping


def check_mapping(mapping: dict[str, str | None] | None, columns: list[str], name: str) -> None:
    """Every mapped column must exist (names compare ignoring case and surrounding spaces); None maps a field to
    nothing (it stays empty)."""
    available = {str(c).strip().lower() for c in columns}
    for field, column in (mapping or {}).items():
        if column is not None and column.strip().lower() not in available:
            raise SeedFileError(name, None, f"--map {field}={column}: no column {column!r}; the columns are: "
                                            f"{', '.join(map(str, columns)) or 'none'}")


def is_dataset(source: Any, name: str | None = None) -> bool:
    """A parquet/arrow file (by name) or a folder: what `read_dataset` reads."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return True
    label = name or (str(source) if isinstance(source, (str, Path)) else str(getattr(source, "name", "")))
    return Path(label).suffix.lower() in DATASET_SUFFIXES


def read_dataset(source: Any, name: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows as dicts) of a parquet file, an arrow file or a save_to_disk folder; `source`
    is a path, bytes (with `name`, as an upload) or a file object."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or str(source)
        if not path.exists():
            raise SeedFileError(name, None, "no such file or folder")
        if path.is_dir():
            table, features = _read_saved_folder(path, name)
        else:  # a regular file only, never more than MAX_BYTES of it (evolab.seeds.fields.read_file)
            table, features = _read_table(read_file(path, name), name)
    else:
        data = source if isinstance(source, (bytes, bytearray, memoryview)) else (
            source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_BYTES + 1))
        name = name or str(getattr(source, "name", "") or "<upload>")
        _check_size(len(data), name)
        table, features = _read_table(bytes(data), name)
    features = features or _features_from_metadata(table.schema.metadata)
    rows = table.to_pylist()
    for column, names in _class_labels(features).items():
        for row in rows:
            value = row.get(column)
            if isinstance(value, int) and 0 <= value < len(names):
                row[column] = names[value]
    if not rows:
        raise SeedFileError(name, None, "the dataset has no rows")
    return list(table.column_names), rows


def _check_size(size: int, name: str) -> None:
    if size > MAX_BYTES:
        raise over_limit(size, name)


_SMALL = 1024 * 1024  # state.json, dataset_info.json, dataset_dict.json: metadata, never this big


def _read_json(path: Path, name: str) -> Any:
    """A metadata file of a save_to_disk folder (a regular file, capped); SeedFileError if unreadable."""
    try:
        return json.loads(read_file(path, f"{name}/{path.name}", _SMALL).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad JSON or bad UTF-8
        raise SeedFileError(f"{name}/{path.name}", None, f"is not readable JSON ({e})") from None


def _read_table(data: bytes, name: str):
    import pyarrow as pa  # heavy: only for parquet/arrow seed files
    import pyarrow.parquet as pq  # heavy: only for parquet/arrow seed files

    if data[:4] == b"PAR1":
        try:
            return pq.read_table(io.BytesIO(data)), None
        except (pa.ArrowException, OSError) as e:
            raise SeedFileError(name, None, f"not a readable parquet file ({e})") from None
    for opener in (pa.ipc.open_file, pa.ipc.open_stream):  # Arrow IPC file ("feather v2"), or the stream
        try:  # format `datasets` writes
            return opener(pa.BufferReader(data)).read_all(), None
        except (pa.ArrowException, OSError):
            continue
    raise SeedFileError(name, None, "neither a parquet nor an Arrow file; a dataset should be a .parquet "
                                    "file, an .arrow file or a folder made by datasets' save_to_disk")


def _read_saved_folder(path: Path, name: str):
    import pyarrow as pa  # heavy: only for parquet/arrow seed files

    if (path / "dataset_dict.json").exists():  # DatasetDict.save_to_disk: one folder per split
        try:
            splits = _read_json(path / "dataset_dict.json", name).get("splits") or []
        except (SeedFileError, AttributeError):
            splits = []
        splits = [s for s in splits if isinstance(s, str) and (path / s).is_dir() and inside(path / s, path)] \
            or sorted(p.name for p in path.iterdir() if p.is_dir())
        raise SeedFileError(name, None, "a dataset with several splits; give one split's folder: "
                                        + ", ".join(str(path / s) for s in splits))
    files: list[Path] = []
    state = path / "state.json"
    if state.exists():
        try:
            entries = _read_json(state, name).get("_data_files", [])
            files = [path / f["filename"] for f in entries]
        except (AttributeError, KeyError, TypeError) as e:
            raise SeedFileError(name, None, f"state.json is not readable ({type(e).__name__}: {e})") from None
    files = files or sorted(path.glob("*.arrow")) or sorted(path.glob("*.parquet"))
    if not files:
        raise SeedFileError(name, None, "is a folder without .arrow or .parquet files; give a seed file, a "
                                        "parquet/arrow file or a folder made by datasets' save_to_disk")
    # Every shard stays inside the folder once symlinks and ".." are resolved: a state.json (or a symlinked
    # shard) never makes this read another file of the machine.
    outside = [_shown(f, path) for f in files if not inside(f, path)]
    if outside:
        raise SeedFileError(name, None, f"names files outside its folder: {', '.join(outside)}; a dataset "
                                        "folder's files must be inside it")
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise SeedFileError(name, None, f"state.json lists files that are not there: {', '.join(missing)}")
    tables, total = [], 0
    for f in files:
        data = read_file(f, str(f))  # a regular file, capped while reading
        total += len(data)
        if total > MAX_BYTES:  # the cap is on all the shards together
            raise SeedFileError(name, None, f"its files together are over the {MAX_BYTES // 2**20} MB limit")
        tables.append(_read_table(data, str(f))[0])
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except pa.ArrowException as e:
        raise SeedFileError(name, None, f"its files have different columns ({e})") from None
    features = None
    info = path / "dataset_info.json"
    if info.exists():
        try:
            features = _read_json(info, name).get("features")
        except (SeedFileError, AttributeError):
            features = None  # the features only name ClassLabel values; the data reads without them
    return table, features


def _shown(file: Path, folder: Path) -> str:
    try:
        return str(file.relative_to(folder))
    except ValueError:  # an absolute path in state.json
        return str(file)


def _features_from_metadata(metadata: dict | None) -> dict | None:
    # datasets keeps its features in the schema metadata of the parquet/arrow files it writes.
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        return json.loads(raw).get("info", {}).get("features")
    except (ValueError, AttributeError):
        return None


def _class_labels(features: Any) -> dict[str, list[str]]:
    if not isinstance(features, dict):
        return {}
    return {column: [str(n) for n in spec["names"]] for column, spec in features.items()
            if isinstance(spec, dict) and spec.get("_type") == "ClassLabel" and isinstance(spec.get("names"), list)}


# Column names other datasets use, tried (in order) after load_seeds' own names; only a mapping UI's defaults.
_LIKELY_NAMES = {
    "instruction": ("question", "query", "task", "request", "text"),
    "input": ("passage", "document", "article", "input_text"),
    "skill": ("topic", "domain", "subject", "task_type", "type"),
    "difficulty": ("level", "complexity", "grade"),
}


def guess_mapping(columns: list[str]) -> dict[str, str | None]:
    """A mapping UI's defaults: for each field the column load_seeds reads without a mapping (its usual names),
    else a column with a name other datasets use for it (question, topic, level, ...), else None."""

    lowered = {str(c).strip().lower(): c for c in columns}
    guess: dict[str, str | None] = {}
    for field in SEED_FIELDS:
        names = [n for n in (*FIELD_NAMES[field], *_LIKELY_NAMES[field]) if n in lowered
                 and lowered[n] not in guess.values()]
        guess[field] = lowered[names[0]] if names else None
    return guess
