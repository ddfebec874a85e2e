"""`evolab embed --run R --ray`: a large run's instructions embedded on a Ray cluster, into the same embedding
cache the Diversity page and `warm_map` read (docs/ray.md).

`RayEmbedder` is an Embedder (a `name` and `encode`) like the others, so `embed.embed_texts` does the caching:
only texts without a cached vector are embedded, under the wrapped embedder's name. Its `encode` runs a Ray
Dataset `map_batches` over an actor pool; each actor loads the model once and embeds batch after batch.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from evolab.embeddings.embed import Embedder, OpenAIEmbedder, normalise_rows
from evolab.llm.raycluster import connect


class _EmbedActor:
    """One Ray actor: the model loaded once (its first batch would otherwise pay for it), then batch after batch."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        getattr(embedder, "model", None)  # load it now

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vector": np.asarray(vectors, dtype=np.float32)}


class RayEmbedder:
    """Wraps a local embedder (the packaged MiniLM or e5, or a sentence-transformers folder present at the same
    path on every node) so that its texts are embedded by `actors` Ray actors. An embeddings endpoint is already
    a server: it gains nothing from Ray, and its key would have to reach every worker, so it is refused."""

    def __init__(self, inner: Embedder, *, actors: int = 2, batch_rows: int = 256, address: str | None = None,
                 log: Callable[[str], None] | None = None):
        if isinstance(inner, OpenAIEmbedder):
            raise ValueError("embed --ray runs a local embedding model on the cluster; an embeddings endpoint "
                             "(EVOLAB_EMBED_BASE_URL) is embedded from this process: leave --ray out.")
        if actors < 1 or batch_rows < 1:
            raise ValueError("--ray-actors and the batch size must be at least 1.")
        self.inner, self.name = inner, inner.name
        self.actors, self.batch_rows, self.address = actors, batch_rows, address
        self.log = log or (lambda _msg: None)
        self.texts_embedded = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        connect(self.address)
        import ray.data  # heavy: ray, only for embed --ray

        blocks = max(self.actors, math.ceil(len(texts) / self.batch_rows))
        ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
        out = ds.map_batches(_EmbedActor, fn_constructor_kwargs={"embedder": self.inner},
                             compute=ray.data.ActorPoolStrategy(size=self.actors), batch_size=self.batch_rows,
                             num_cpus=1, batch_format="numpy")
        vectors: np.ndarray | None = None
        done, start = 0, time.perf_counter()
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            block = np.asarray(batch["vector"], dtype=np.float32)
            if vectors is None:
                vectors = np.zeros((len(texts), block.shape[1]), dtype=np.float32)
            vectors[np.asarray(batch["i"], dtype=np.int64)] = block
            done += len(block)
            self.log(f"embedded {done:,} of {len(texts):,} ({done / (time.perf_counter() - start):.0f}/s, "
                     f"{self.actors} actors)")
        self.texts_embedded += len(texts)
        return normalise_rows(vectors)
