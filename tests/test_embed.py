import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import HashEmbedder, build_run
from conftest import STUB_KEY, STUB_KEY_ENV

from evolab.analysis import frames as analysis
from evolab.embeddings import embed
from evolab.store import Store, text_hash
from evolab.testing.stub_server import StubServer

ROOT = Path(__file__).resolve().parents[1]


def test_importing_analysis_modules_loads_no_heavy_library():
    code = ("import sys; import evolab.embeddings.embed, evolab.analysis.frames, evolab.analysis.viz, evolab.analysis.report, evolab.embeddings.novelty, "
            "evolab.audit.judge, evolab.text.complexity; "
            "heavy = [m for m in ('torch', 'sentence_transformers', 'umap', 'sklearn', 'streamlit') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the store cache -------------------------------------------------------------------------------------
def test_vectors_are_cached_by_model_and_text(store):
    emb = HashEmbedder()
    texts = ["Write a poem.", "Explain tides.", "Write a poem."]
    first = embed.embed_texts(texts, emb, store)
    assert first.shape == (3, 64) and first.dtype == np.float32
    assert emb.texts_embedded == 2  # the repeated text once
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert np.array_equal(first[0], first[2])
    again = embed.embed_texts(texts, emb, store)
    assert emb.texts_embedded == 2 and emb.calls == 1  # nothing embedded the second time
    assert np.array_equal(first, again)
    embed.embed_texts(texts + ["A new one."], emb, store)
    assert emb.texts_embedded == 3  # only the new text
    stored = store.get_embeddings(emb.name, [text_hash("Explain tides.")])
    assert np.allclose(np.frombuffer(stored[text_hash("Explain tides.")], dtype=np.float32), first[1])


def test_another_model_name_is_another_cache(store):
    a, b = HashEmbedder(), HashEmbedder()
    b.name = "another-model"
    embed.embed_texts(["x y"], a, store)
    embed.embed_texts(["x y"], b, store)
    assert a.texts_embedded == b.texts_embedded == 1


def test_without_a_store_nothing_is_cached():
    emb = HashEmbedder()
    embed.embed_texts(["a", "b"], emb)
    embed.embed_texts(["a", "b"], emb)
    assert emb.texts_embedded == 4
    assert embed.embed_texts([], emb).shape[0] == 0


def test_node_text_includes_input():
    assert embed.node_text("Sum the table.", "| 1 | 2 |") == "Sum the table.\n\n| 1 | 2 |"
    assert embed.node_text("Sum.", "") == "Sum."


def test_second_analysis_of_a_run_embeds_nothing(store):
    build_run(store)
    run_id = store.latest_run_id()
    emb = HashEmbedder()
    frame, vectors = analysis.embedding_map(store, run_id, emb)
    n = len(frame)
    assert emb.texts_embedded == n and vectors.shape == (n, 64)
    assert frame[["x", "y"]].notna().all().all()
    fits = embed.COUNTERS["umap_fits"]
    frame2, vectors2 = analysis.embedding_map(store, run_id, emb)
    assert emb.texts_embedded == n  # all vectors from the store
    assert embed.COUNTERS["umap_fits"] == fits  # the map from the cache
    assert np.array_equal(frame["x"], frame2["x"]) and np.array_equal(vectors, vectors2)


def test_two_runs_share_one_map(store):
    a, b = build_run(store, name="a"), build_run(store, name="b", rounds=1)
    emb = HashEmbedder()
    fits = embed.COUNTERS["umap_fits"]
    frame, vectors = analysis.embedding_map(store, [a.run_id, b.run_id], emb)
    assert embed.COUNTERS["umap_fits"] == fits + 1
    assert len(frame) == len(a.nodes) + len(b.nodes) == len(vectors)
    assert set(frame["run_id"]) == {a.run_id, b.run_id}
    # texts shared by both runs were embedded once
    assert emb.texts_embedded == len({embed.node_text(i, x) for i, x in zip(frame["instruction"], frame["input"])})


# -- UMAP ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    """One real UMAP fit for the module (the first fit in a process pays numba's JIT)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    vectors = np.vstack([c + rng.normal(scale=0.1, size=(40, 32)) for c in centres]).astype(np.float32)
    embed.clear_umap_memory()
    before = embed.COUNTERS["umap_fits"]
    coords = embed.umap_coords(vectors, n_neighbors=10)
    assert embed.COUNTERS["umap_fits"] == before + 1
    return vectors, coords


def test_umap_gives_2d_coordinates_that_keep_clusters(fitted):
    vectors, coords = fitted
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    centres = [coords[i * 40:(i + 1) * 40].mean(axis=0) for i in range(3)]
    spread = max(coords[i * 40:(i + 1) * 40].std(axis=0).max() for i in range(3))
    gaps = min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3))
    assert gaps > 2 * spread


def test_umap_is_cached_by_content_and_settings(fitted, tmp_path):
    vectors, coords = fitted
    fits = embed.COUNTERS["umap_fits"]
    again = embed.umap_coords(vectors, n_neighbors=10)
    assert embed.COUNTERS["umap_fits"] == fits and np.array_equal(coords, again)
    again[0, 0] = 1e9  # callers get a copy: the cache stays intact
    assert embed.umap_coords(vectors, n_neighbors=10)[0, 0] != 1e9
    other = embed.umap_coords(vectors, n_neighbors=10, min_dist=0.5, cache_dir=tmp_path)
    assert embed.COUNTERS["umap_fits"] == fits + 1
    assert not np.array_equal(other, coords)
    # from the file cache after the memory is cleared
    assert len(list(tmp_path.glob("*.npy"))) == 1
    embed.clear_umap_memory()
    from_disk = embed.umap_coords(vectors, n_neighbors=10, min_dist=0.5, cache_dir=tmp_path)
    assert embed.COUNTERS["umap_fits"] == fits + 1 and np.array_equal(other, from_disk)
    changed = vectors.copy()
    changed[0, 0] += 0.5
    embed.umap_coords(changed, n_neighbors=10, min_dist=0.5, cache_dir=tmp_path)
    assert embed.COUNTERS["umap_fits"] == fits + 2


def test_exact_cosine_knn_matches_brute_force():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(50, 6)).astype(np.float32)
    v[7] = v[3]  # an exact duplicate still lists itself first
    idx, dist = embed.exact_cosine_knn(v, 5, block=16)
    unit = embed.normalise_rows(v)
    sims = unit @ unit.T
    for i in range(len(v)):
        assert idx[i, 0] == i and dist[i, 0] == 0.0
        others = [j for j in np.argsort(-sims[i], kind="stable") if j != i][:4]
        assert sorted(np.round(1 - sims[i, others], 5)) == pytest.approx(sorted(np.round(dist[i, 1:], 5)), abs=1e-4)
        assert list(dist[i]) == sorted(dist[i])
    assert 3 in idx[7, :2] and 7 in idx[3, :2]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 12])
def test_umap_small_inputs(fitted, n):
    rng = np.random.default_rng(n)
    coords = embed.umap_coords(rng.normal(size=(n, 8)).astype(np.float32), use_cache=False)
    assert coords.shape == (n, 2) and np.isfinite(coords).all()


def test_umap_cache_dir_beside_the_database(tmp_path):
    s = Store(tmp_path / "runs.db")
    assert embed.umap_cache_dir(s) == Path(str(tmp_path / "runs.db") + ".umap")
    assert embed.umap_cache_dir(Store(":memory:")) is None
    s.close()


# -- real embedders --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    return embed.minilm_embedder()


def test_packaged_minilm_offline(minilm, store):
    assert minilm.name == "all-MiniLM-L6-v2"
    texts = ["How do I bake bread at home?", "Give me a recipe for homemade bread.", "Prove that 17 is prime."]
    before = embed.COUNTERS["texts_embedded"]
    v = embed.embed_texts(texts, minilm, store)
    assert v.shape == (3, 384)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set before the model loads: never the network
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert embed.COUNTERS["texts_embedded"] == before + 3
    embed.embed_texts(texts, minilm, store)
    assert embed.COUNTERS["texts_embedded"] == before + 3


def test_any_local_sentence_transformers_folder(minilm):
    local = embed.make_embedder(str(embed.packaged_model_path()))
    assert isinstance(local, embed.SentenceTransformerEmbedder) and local.name == "st:model"
    assert np.allclose(local.encode(["hello"]), minilm.encode(["hello"]), atol=1e-5)


def test_make_embedder_choices(monkeypatch):
    assert embed.make_embedder() is embed.default_embedder()
    assert embed.make_embedder("all-MiniLM-L6-v2") is embed.minilm_embedder()
    with pytest.raises(ValueError, match="local sentence-transformers folder"):
        embed.make_embedder("no/such/model")
    remote = embed.make_embedder("text-embedding-3-small", base_url="http://127.0.0.1:9/v1", api_key_env="K")
    assert isinstance(remote, embed.OpenAIEmbedder) and remote.name == "text-embedding-3-small@http://127.0.0.1:9/v1"
    monkeypatch.setenv("EVOLAB_EMBED_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("EVOLAB_EMBED_MODEL", "e5")
    from_env = embed.embedder_from_env()
    assert isinstance(from_env, embed.OpenAIEmbedder) and from_env.model == "e5"


def test_openai_compatible_endpoint_with_key_from_env(store):
    with StubServer(api_key=STUB_KEY) as stub:
        emb = embed.OpenAIEmbedder(stub.base_url, "stub-embed", api_key_env=STUB_KEY_ENV, batch_size=2)
        texts = ["one", "two", "", "four", "one"]
        v = embed.embed_texts(texts, emb, store)
        assert v.shape == (5, 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert emb.texts_embedded == 4
        posts = [r for r in stub.requests if r["path"].endswith("/embeddings")]
        assert len(posts) == 2  # 4 distinct texts in batches of 2
        embed.embed_texts(texts, emb, store)
        assert len([r for r in stub.requests if r["path"].endswith("/embeddings")]) == 2
    raw = Path(store.path).read_bytes() + Path(store.path + "-wal").read_bytes() if Path(
        store.path + "-wal").exists() else Path(store.path).read_bytes()
    assert STUB_KEY.encode() not in raw  # the key is never stored


def test_openai_endpoint_errors_say_what_to_do():
    with StubServer(api_key="other-key") as stub:
        emb = embed.OpenAIEmbedder(stub.base_url, "stub-embed", api_key_env=STUB_KEY_ENV, max_retries=0)
        with pytest.raises(RuntimeError, match="check the URL, model name and key variable"):
            emb.encode(["x"])
