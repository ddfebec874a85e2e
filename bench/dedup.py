"""How many in-depth children `--dedup` removes on the shipped finance seeds.

Runs `evolab/data/finance.jsonl` for 3 rounds with the scripted model (in-process, no network): its in-depth
child keeps every word of its parent and adds a clause, as in-depth evolution does ("add constraints",
"deepen" ...), so ROUGE-L between a child and its own parent is high while the child is a real evolution.
Prints the share of in-depth children eliminated as `duplicate`.

    .venv/bin/python bench/dedup.py                      # this checkout
    .venv/bin/python bench/dedup.py --repo /tmp/old      # another checkout of evolab (e.g. before the fix)

The scripted model is the extreme case (it keeps the parent's words verbatim); real models paraphrase more,
so the share they lose is lower. The point is the difference between comparing with one's own ancestors
and not.

`--scale` measures instead what `--dedup` costs as the pool grows: synthetic pools of 10,000 and 100,000
instructions and 1,000 children (500 rewrites of pool members, 500 new texts from the same vocabulary); each
child's highest ROUGE-L with the pool, exact (every pool text compared) against `RougeIndex` (MinHash LSH, the
signatures' Jaccard estimate, ROUGE-L: evolab/embeddings/novelty.py), and how often the two make the same
keep/drop decision at 0.7. The exact check is timed on every child at 10,000 and on `--exact-sample` children
above (all 1,000 would take about an hour at 100,000) and given per 1,000 children.

`--generator` picks the pool: `tuning` (what the LSH parameters were chosen on: 8-40 words from a Zipf
vocabulary of 5,000 words, exponent 1) or one of the held-out settings the parameters were never tuned on:
`zipf-2k` (2,000 words, exponent 1.2: frequent words weigh more), `wide` (50,000 words, exponent 0.9, 5-60
words), `real` (tokens drawn from the token frequencies of held-out real texts in tests/data, English and Korean,
with their lengths).

    .venv/bin/python bench/dedup.py --scale                       # pools of 10,000 and 100,000
    .venv/bin/python bench/dedup.py --scale --generator real --pools 10000,100000
    .venv/bin/python bench/dedup.py --scale --bands 42 --rows 3   # other LSH parameters
    .venv/bin/python bench/dedup.py --agreement   # exact against LSH on the tests' sets and held-out real texts
    .venv/bin/python bench/dedup.py --lint-rows 10000,30000   # seeds lint: its exact bound against LSH
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


GENERATORS = {  # name: (vocabulary, Zipf exponent, shortest, longest)
    "tuning": (5000, 1.0, 8, 40),
    "zipf-2k": (2000, 1.2, 8, 40),
    "wide": (50_000, 0.9, 5, 60),
}
REAL_TEXTS = ("tests/data/embeddings/ko_neardup_tuning.jsonl", "tests/data/embeddings/ko_neardup_heldout.jsonl",
              "tests/data/topic/tuning.jsonl", "tests/data/topic/heldout.jsonl", "tests/data/refusals/en.jsonl",
              "tests/data/refusals/ko.jsonl", "tests/data/refusals_heldout/en.jsonl",
              "tests/data/refusals_heldout/ko.jsonl")


def real_texts(root: Path = HERE) -> list[str]:
    """The held-out real texts: Korean paraphrase pairs, parent/child evolutions, answers in English and Korean
    (none of them in tests/test_dedup_lsh.py's sets)."""
    import json

    out = []
    for name in REAL_TEXTS:
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out += [str(row[k]) for k in ("a", "b", "parent", "child", "text") if row.get(k)]
    return list(dict.fromkeys(out))


def synthetic_instructions(n: int, seed: int = 0, vocabulary: int = 5000, generator: str = "tuning") -> list[str]:
    """n instructions whose words follow a Zipf law (the frequent words are shared, like "the"); with
    generator="real", tokens drawn as often as in the held-out real texts, lengths as theirs."""
    rng = random.Random(seed)
    if generator == "real":
        from evolab.embeddings.novelty import tokenize

        docs = [tokenize(t) for t in real_texts()]
        counts = Counter(t for d in docs for t in d)
        words, weights = list(counts), list(counts.values())
        lengths = [len(d) for d in docs if d]
        return [" ".join(rng.choices(words, weights, k=rng.choice(lengths))) for _ in range(n)]
    size, exponent, shortest, longest = GENERATORS[generator]
    size = vocabulary if generator == "tuning" else size
    syllables = ["ka", "lo", "mi", "ten", "ra", "so", "vi", "den", "pu", "ex", "qua", "bri", "no", "tor", "ul"]
    longest_word, draws = (4, 2) if generator == "tuning" else (5, 3)  # tuning: the vocabulary measured before
    words = list(dict.fromkeys("".join(rng.choice(syllables) for _ in range(rng.randint(1, longest_word)))
                               for _ in range(size * draws)))[:size]
    weights = [1 / (k + 1) ** exponent for k in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(shortest, longest))) for _ in range(n)]


def rewrite(text: str, rng: random.Random) -> str:
    """Keep most words, drop, swap or add a few: the rewrites in-depth evolution makes."""
    words = text.split()
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.4 and len(words) > 4:
            del words[rng.randrange(len(words))]
        elif kind < 0.7:
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        elif len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def pool_and_children(size: int, generator: str, n_children: int = 1000) -> tuple[list[str], list[str]]:
    """A pool and children for it: half rewrites of pool members, half new texts from the same vocabulary."""
    rng = random.Random(1)
    texts = synthetic_instructions(size + n_children // 2, seed=size, generator=generator)
    pool, new = texts[:size], texts[size:]
    children = [rewrite(pool[rng.randrange(size)], rng) for _ in range(n_children - len(new))] + new
    rng.shuffle(children)
    return pool, children


def scale(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.repo)
    from evolab.embeddings import novelty
    from evolab.embeddings.novelty import ROUGE_L_MAX, RougeIndex, max_rouge_l

    params = {k: getattr(args, k) for k in ("bands", "rows") if getattr(args, k)}
    floor = novelty.jaccard_floor(ROUGE_L_MAX)
    before = not hasattr(RougeIndex, "band_hits")  # a checkout from before the estimate stage (e.g. 4d6ca7f)
    if before:
        print(f"evolab at {args.repo} (datasketch's MinHashLSH, {novelty.LSH_BANDS} bands x {novelty.LSH_ROWS} rows, "
              f"every band hit compared by ROUGE-L); generator {args.generator}\n")
    else:
        probe = RougeIndex(exact=False, **params)
        miss = novelty.miss_probability(floor, probe.bands, probe.rows, probe.estimate_columns, probe.min_matches)
        print(f"evolab at {args.repo}; generator {args.generator}; 1,000 children (500 rewrites of pool members, "
              f"500 new) per pool; limit ROUGE-L {ROUGE_L_MAX}; LSH {probe.bands} bands x {probe.rows} rows, estimate "
              f"over {probe.estimate_columns} columns >= {probe.min_matches} matches; miss chance at the Jaccard "
              f"floor {floor:.3f}: {miss:.1e}\n")
    print("| pool | exact, per 1,000 children | MinHash of the pool | index (bands) | LSH, per 1,000 children "
          "| children over 0.7 (exact) | same decision | LSH band hits a child | ROUGE-L comparisons a child "
          "| index memory |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in [int(x) for x in args.pools.split(",")]:
        pool, children = pool_and_children(size, args.generator)
        t0 = time.perf_counter()
        if before:  # MinHash and banding in one step
            t1, index = t0, RougeIndex(pool, exact=False)
        else:
            signatures = novelty.minhashes(pool, probe.num_perm)
            t1 = time.perf_counter()
            index = RougeIndex(exact=False, **params)
            index.add_many(pool, signatures=signatures)
        t2 = time.perf_counter()
        lsh_times = []
        for _ in range(args.repeat):  # the machine is shared: the best of a few passes
            t = time.perf_counter()
            fast = [index.max_rouge_l(c) for c in children]
            lsh_times.append(time.perf_counter() - t)
        sample = children[:min(args.exact_sample, len(children))] if size > 10_000 else children
        sample = [] if args.no_exact else sample
        t3 = time.perf_counter()
        exact = [max_rouge_l(c, pool) for c in sample]
        t4 = time.perf_counter()
        same = sum((e > ROUGE_L_MAX) == (f > ROUGE_L_MAX) for e, f in zip(exact, fast))
        hits = sum(len(index.candidates(c) if before else index.band_hits(c)) for c in children) / len(children)
        compared = sum(len(index.candidates(c)) for c in children) / len(children)
        over = sum(e > ROUGE_L_MAX for e in exact)
        per_exact = f"{(t4 - t3) / len(sample) * 1000:,.1f} s" if sample else "not timed"
        print(f"| {size:,} | {per_exact}{'' if len(sample) in (0, len(children)) else f' ({len(sample)} timed)'} | "
              f"{t1 - t0:.1f} s | {t2 - t1:.1f} s | {min(lsh_times) / len(children) * 1000:.2f} s | "
              f"{over} of {len(sample)} | {same} of {len(sample)} | {hits:,.1f} ({hits / size:.2%}) | {compared:.2f} | "
              f"{'not measured' if before else f'{index_bytes(index) / 1e6:,.0f} MB'} |", flush=True)
    if args.minhash_cost:
        minhash_cost(pool[:2000], novelty)


def agreement(args: argparse.Namespace) -> None:
    """Exact dedup against LSH dedup (keep-the-first, in order) on the tests' sets and on the held-out real texts,
    each text with 3 edits."""
    sys.path.insert(0, args.repo)
    sys.path.insert(0, str(Path(args.repo) / "tests"))
    from test_dedup_lsh import base_texts, edited  # the tests' sets, built as the tests build them

    from evolab.embeddings.novelty import rouge_duplicates_lsh

    print("| texts | n | dropped (exact) | dropped (LSH) | same texts dropped | same scores | exact | LSH |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, texts in (("the tests' sets (tests/test_dedup_lsh.py)", base_texts()),
                        ("held-out real texts (REAL_TEXTS)", real_texts(Path(args.repo)))):
        rng = random.Random(7)
        pool = list(texts) + [edited(t, rng) for t in texts for _ in range(3)]
        rng.shuffle(pool)
        t0 = time.perf_counter()
        exact = rouge_duplicates_lsh(pool, exact=True)
        t1 = time.perf_counter()
        fast = rouge_duplicates_lsh(pool, exact=False)
        t2 = time.perf_counter()
        same = set(j for j, _, _ in exact) == set(j for j, _, _ in fast)
        scores = [round(s, 6) for _, _, s in exact] == [round(s, 6) for _, _, s in fast]
        print(f"| {name} | {len(pool):,} | {len(exact)} | {len(fast)} | {'yes' if same else 'NO'} | "
              f"{'yes' if scores else 'NO'} | {t1 - t0:.1f} s | {t2 - t1:.1f} s |")


def lint_paths(args: argparse.Namespace) -> None:
    """seeds lint's ROUGE-L pairs on bench/seedlint.py's rows: its sparse token-count bound against the LSH path
    (CPU seconds of this process, so other work on the machine counts less)."""
    sys.path.insert(0, args.repo)
    sys.path.insert(0, str(HERE / "bench"))
    from seedlint import synthetic

    from evolab.seeds import lint

    print("| rows | bound (CPU) | LSH (CPU) | rows found (bound) | rows found (LSH) | same rows |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.lint_rows.split(",")]:
        texts = [s.instruction for s in synthetic(n)]
        found, cpu = {}, {}
        for name, min_rows in (("bound", len(texts) + 1), ("lsh", 0)):
            saved = lint.LSH_MIN_ROWS
            lint.LSH_MIN_ROWS = min_rows
            t = time.process_time()
            found[name] = sorted(f.row for f in lint._rouge_duplicates(texts, set()))
            cpu[name] = time.process_time() - t
            lint.LSH_MIN_ROWS = saved
        print(f"| {n:,} | {cpu['bound']:.1f} s | {cpu['lsh']:.1f} s | {len(found['bound'])} | {len(found['lsh'])} | "
              f"{'yes' if found['bound'] == found['lsh'] else 'NO'} |")


def index_bytes(index) -> int:
    """The LSH index's arrays: band keys, positions and directories, the estimate's columns, lengths, groups."""
    runs = sum(k.nbytes + p.nbytes + s.nbytes for k, p, s, _ in index._bands.runs)
    return runs + sum(c.data.nbytes for c in (index._estimate, index._lengths, index._group_code))


def minhash_cost(texts: list[str], novelty) -> None:
    """MinHash of the same texts: datasketch's MinHash.bulk (a numpy pass per text) with its default SHA-1 of each
    shingle (as evolab used it before) and with evolab's shingle hashes, against evolab's numpy pass over all
    texts at once (the same signatures as the second)."""
    from datasketch import MinHash

    print(f"\nMinHash of {len(texts):,} pool texts (best of 3), per 10,000 texts:\n")
    print("| permutations | datasketch, SHA-1 shingles | datasketch, evolab's shingle hashes | numpy, all texts at "
          "once | same signatures (2nd, 3rd) |")
    print("|---:|---:|---:|---:|---:|")
    shingles = [[f"{t}\x00{k}".encode() for t, k in _tagged(novelty.tokenize(x))] for x in texts]
    hashes = [h.tolist() for h in novelty.shingle_hashes(texts)]
    for num_perm in (126, novelty.LSH_PERMUTATIONS):
        runs = {"sha1": lambda: MinHash.bulk([s for s in shingles if s], num_perm=num_perm),
                "ours": lambda: MinHash.bulk([h for h in hashes if h], num_perm=num_perm, seed=novelty.MINHASH_SEED,
                                             hashfunc=int),
                "numpy": lambda: novelty.minhashes(texts, num_perm)}
        best, out = {}, {}
        for name, run in runs.items():
            times = []
            for _ in range(3):
                t = time.perf_counter()
                out[name] = run()
                times.append(time.perf_counter() - t)
            best[name] = min(times) * 10_000 / len(texts)
        same = all((m.hashvalues == s).all() for m, s in zip(out["ours"], [s for s, h in zip(out["numpy"], hashes) if h]))
        print(f"| {num_perm} | {best['sha1']:.2f} s | {best['ours']:.2f} s | {best['numpy']:.2f} s | "
              f"{'yes' if same else 'NO'} |")


def _tagged(tokens):
    seen: dict[str, int] = {}
    for t in tokens:
        seen[t] = seen.get(t, 0) + 1
        yield t, seen[t] - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE), help="the evolab checkout to measure")
    parser.add_argument("--seeds", default=str(HERE / "evolab" / "data" / "finance.jsonl"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", action="store_true", help="time --dedup's check at large pools, exact vs LSH")
    parser.add_argument("--pools", default="10000,100000")
    parser.add_argument("--exact-sample", type=int, default=100, help="children timed exactly above 10,000")
    parser.add_argument("--generator", default="tuning", choices=[*GENERATORS, "real"], help="the pool's texts")
    parser.add_argument("--bands", type=int, help="LSH bands (default: novelty.LSH_BANDS)")
    parser.add_argument("--rows", type=int, help="LSH rows a band (default: novelty.LSH_ROWS)")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact check (LSH figures only)")
    parser.add_argument("--repeat", type=int, default=3, help="LSH passes over the children (the best is given)")
    parser.add_argument("--agreement", action="store_true", help="exact against LSH on the tests' sets and held-out texts")
    parser.add_argument("--lint-rows", help="seeds lint at these row counts (e.g. 10000,30000): bound against LSH")
    parser.add_argument("--minhash-cost", action="store_true", help="also time datasketch's MinHash.bulk")
    args = parser.parse_args()
    if args.scale:
        return scale(args)
    if args.agreement:
        return agreement(args)
    if args.lint_rows:
        return lint_paths(args)
    sys.path.insert(0, args.repo)

    from evolab.llm import FakeBackend
    from evolab.schema import RunConfig
    from evolab.store import Store

    try:  # evolab in packages (this checkout)
        from evolab.engine import pipeline
        from evolab.seeds.files import load_seeds
    except ImportError:  # a checkout from before the move into packages (e.g. 92462f9)
        from evolab import pipeline
        from evolab.seeds import load_seeds
    try:  # the operation registry
        from evolab.engine.operations import in_depth_operations
        in_depth = tuple(in_depth_operations())
    except ImportError:  # before it: a constant in schema
        from evolab.schema import IN_DEPTH_OPERATIONS as in_depth

    seeds = load_seeds(args.seeds)
    rows = []
    for dedup in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "dedup.db")
            config = RunConfig(model="fake", base_url="http://fake", rounds=args.rounds, concurrency=16,
                               operation_weights={op: 1.0 for op in in_depth})
            config.rules.duplicate = dedup
            run_id = pipeline.create_run(store, seeds, config)
            pipeline.run_sync(store, run_id, backend=FakeBackend())
            children = [n for n in store.nodes(run_id) if n.round > 0]
            rules = Counter(n.rule for n in children if n.status != "kept")
            removed = rules.get("duplicate", 0)
            rows.append((dedup, len(children), sum(n.status == "kept" for n in children), removed))
            store.close()
    print(f"evolab at {args.repo}; {len(seeds)} seeds, {args.rounds} rounds, in-depth operations only, scripted model\n")
    print("| --dedup | in-depth children | kept | removed as duplicate | share removed |")
    print("|---|---:|---:|---:|---:|")
    for dedup, n, kept, removed in rows:
        print(f"| {'on' if dedup else 'off'} | {n} | {kept} | {removed} | {removed / n:.0%} |")


if __name__ == "__main__":
    main()
