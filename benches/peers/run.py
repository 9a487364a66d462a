#!/usr/bin/env python3
"""memoryd beside the tools operators would pick instead, in one run.

Embedding: memoryd (candle) vs sentence-transformers (torch, CPU) vs ONNX Runtime
(the engine behind fastembed and Chroma), same model (all-MiniLM-L6-v2 from
models/), same LoCoMo turns and questions, same thread count, rounds alternating
between implementations. Index: memoryd's HNSW (hnsw_rs) vs hnswlib vs faiss
(HNSW and flat) on the same clustered 384-d unit vectors, recall@10 against exact
search and single-query p50 latency on one thread, compared at matched recall.

Run from the repository root, in a virtualenv outside the repo (see README.md here):
    python benches/peers/run.py [--rounds 3] [--n 100000] [--skip-embed] [--skip-index]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
LOCOMO = os.path.join(ROOT, "..", "shared", "data", "locomo", "locomo10.json")
THREADS = int(os.environ.get("PEER_THREADS", "2"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch collapses under CPU contention otherwise


def load_locomo():
    data = json.load(open(LOCOMO))
    turns, questions = [], []
    for s in data:
        conv = s["conversation"]
        keys = sorted((int(k.split("_")[1]), k) for k in conv if k.startswith("session_") and not k.endswith("date_time"))
        for _, k in keys:
            for t in conv[k]:
                text = t["text"] + (f" [shares {t['blip_caption']}]" if t.get("blip_caption") else "")
                turns.append(f"{t['speaker']}: {text}")
        questions += [q["question"] for q in s["qa"]]
    step = len(turns) // 128
    return turns[::step][:128], questions[:200]


def pct(values, p):
    v = sorted(values)
    return v[max(0, min(len(v), int(np.ceil(p * len(v)))) - 1)]


def cargo_bench(name, args):
    cmd = ["cargo", "bench", "-q", "--features", "eval", "--bench", name, "--"] + args
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def embed_round(texts_file, queries_file, texts, queries, st_model, ort):
    rows = []
    for r in cargo_bench("peer_embed", ["--texts", texts_file, "--queries", queries_file]):
        rows.append(r)
    import torch  # noqa: F401  (imported by sentence-transformers)
    for impl, encode in (("sentence-transformers", st_encode(st_model)), ("onnxruntime", ort_encode(*ort))):
        for b in (1, 8, 32, 128):
            encode(texts[:8], b)
            t = time.perf_counter()
            encode(texts, b)
            rows.append({"impl": impl, "batch": b, "texts_per_s": len(texts) / (time.perf_counter() - t)})
        encode(queries[:1], 1)
        ms = []
        for q in queries:
            t = time.perf_counter()
            encode([q], 1)
            ms.append((time.perf_counter() - t) * 1e3)
        rows.append({"impl": impl, "query_p50_ms": pct(ms, 0.5), "query_p95_ms": pct(ms, 0.95)})
    return rows


def st_encode(model):
    def encode(texts, batch):
        # sentence-transformers sorts by length itself.
        return model.encode(texts, batch_size=batch, normalize_embeddings=True)
    return encode


def ort_encode(session, tokenizer):
    def encode(texts, batch):
        order = sorted(range(len(texts)), key=lambda i: len(tokenizer.tokenize(texts[i])))
        out = [None] * len(texts)
        for s in range(0, len(texts), batch):
            idx = order[s:s + batch]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = session.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            for j, i in enumerate(idx):
                out[i] = pooled[j]
        return out
    return encode


def export_onnx(path):
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        """Fixes the argument order for tracing (transformers' forward signature varies)."""

        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(MODEL).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    args = (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    axes = {k: {0: "batch", 1: "seq"} for k in names + ["last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(Encoder().eval(), args, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def run_embed(rounds):
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    torch.set_num_threads(THREADS)
    texts, queries = load_locomo()
    tmp = tempfile.mkdtemp()
    tf, qf = os.path.join(tmp, "texts.txt"), os.path.join(tmp, "queries.txt")
    open(tf, "w").write("\n".join(t.replace("\n", " ") for t in texts))
    open(qf, "w").write("\n".join(q.replace("\n", " ") for q in queries))
    onnx_path = os.path.join(tmp, "minilm.onnx")
    export_onnx(onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    st = SentenceTransformer(MODEL, device="cpu")
    rows = []
    for r in range(rounds):
        load = os.getloadavg()[0]
        for row in embed_round(tf, qf, texts, queries, st, (session, tokenizer)):
            row.update(round=r, load1=load)
            rows.append(row)
    return rows


def clustered(n, dim, clusters, seed, basis=8):
    """Same distribution as benches/common/mod.rs: per cluster, a random centre
    (unit scale) plus variation along 8 random directions (scale 0.5) and
    isotropic noise 0.01 per dimension, then L2-normalized."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32) / np.sqrt(dim)
    bases = rng.standard_normal((clusters, basis, dim)).astype(np.float32) / np.sqrt(dim)
    c = rng.integers(0, clusters, n)
    z = 0.5 * rng.standard_normal((n, basis)).astype(np.float32)
    pts = centres[c] + np.einsum("nb,nbd->nd", z, bases[c]) + 0.01 * rng.standard_normal((n, dim)).astype(np.float32)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def run_index(n, efs=(16, 32, 64, 128, 256)):
    import faiss
    import hnswlib
    faiss.omp_set_num_threads(1)
    # Queries come from the same clusters as the data (held out, not inserted).
    both = clustered(n + 200, 384, max(10, n // 100), 42)
    x, q = np.ascontiguousarray(both[:n]), np.ascontiguousarray(both[n:])
    tmp = tempfile.mkdtemp()
    xf, qf = os.path.join(tmp, "x.f32"), os.path.join(tmp, "q.f32")
    x.astype("<f4").tofile(xf)
    q.astype("<f4").tofile(qf)
    rows = cargo_bench("peer_index", ["--vectors", xf, "--queries", qf, "--efs", ",".join(map(str, efs))])
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]

    def measure(name, search, ef_setter):
        for ef in efs:
            ef_setter(ef)
            ms, hit = [], 0
            for i in range(len(q)):
                t = time.perf_counter()
                ids = search(q[i:i + 1])
                ms.append((time.perf_counter() - t) * 1e3)
                hit += len(set(ids) & set(truth[i]))
            rows.append({"impl": name, "method": "hnsw", "n": n, "ef": ef, "recall": hit / (10 * len(q)), "p50_ms": pct(ms, 0.5)})

    t = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=384)
    h.init_index(max_elements=n, M=16, ef_construction=200)
    h.set_num_threads(2)
    h.add_items(x)
    h.set_num_threads(1)
    rows.append({"impl": "hnswlib", "n": n, "build_s": time.perf_counter() - t})
    measure("hnswlib", lambda v: h.knn_query(v, k=10)[0][0], h.set_ef)
    t = time.perf_counter()
    f = faiss.IndexHNSWFlat(384, 16, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = 200
    faiss.omp_set_num_threads(2)
    f.add(x)
    faiss.omp_set_num_threads(1)
    rows.append({"impl": "faiss-hnsw", "n": n, "build_s": time.perf_counter() - t})
    measure("faiss-hnsw", lambda v: f.search(v, 10)[1][0], lambda ef: setattr(f.hnsw, "efSearch", ef))
    flat = faiss.IndexFlatIP(384)
    flat.add(x)
    ms = []
    for i in range(len(q)):
        t = time.perf_counter()
        flat.search(q[i:i + 1], 10)
        ms.append((time.perf_counter() - t) * 1e3)
    rows.append({"impl": "faiss-flat", "method": "exact", "n": n, "recall": 1.0, "p50_ms": pct(ms, 0.5)})
    return rows


def report(embed_rows, index_rows):
    out = []
    if embed_rows:
        out.append(f"\nEmbedding ({THREADS} threads; median of rounds; load1 {min(r['load1'] for r in embed_rows):.2f}-{max(r['load1'] for r in embed_rows):.2f})\n")
        impls = ["memoryd", "sentence-transformers", "onnxruntime"]
        out.append("| implementation | batch 1 | batch 8 | batch 32 | batch 128 | query p50 ms | query p95 ms |\n|---|---|---|---|---|---|---|\n")
        med = {}
        for impl in impls:
            cells = []
            for b in (1, 8, 32, 128):
                v = float(np.median([r["texts_per_s"] for r in embed_rows if r["impl"] == impl and r.get("batch") == b]))
                med[(impl, b)] = v
                cells.append(f"{v:.1f}")
            for key in ("query_p50_ms", "query_p95_ms"):
                v = float(np.median([r[key] for r in embed_rows if r["impl"] == impl and key in r]))
                med[(impl, key)] = v
                cells.append(f"{v:.2f}")
            out.append(f"| {impl} | " + " | ".join(cells) + " |\n")
        for peer in impls[1:]:
            ratios = ", ".join(f"batch {b} {med[('memoryd', b)] / med[(peer, b)]:.2f}x" for b in (1, 8, 32, 128))
            out.append(f"\nmemoryd/{peer} throughput: {ratios}; query p50 {med[('memoryd', 'query_p50_ms')] / med[(peer, 'query_p50_ms')]:.2f}x the latency\n")
    if index_rows:
        n = index_rows[0]["n"]
        out.append(f"\nIndex, n={n}, 384-d clustered unit vectors, k=10, one query thread\n\n| implementation | ef | recall@10 | p50 ms |\n|---|---|---|---|\n")
        for r in index_rows:
            if "p50_ms" in r:
                out.append(f"| {r['impl']} ({r['method']}) | {r.get('ef', '-')} | {r['recall']:.3f} | {r['p50_ms']:.3f} |\n")
        for r in index_rows:
            if "build_s" in r:
                out.append(f"\n{r['impl']} build: {r['build_s']:.1f} s")
        out.append("\n")
        for target in (0.95, 0.99):
            best = {}
            for r in index_rows:
                if r.get("method") == "hnsw" and r["recall"] >= target:
                    best[r["impl"]] = min(best.get(r["impl"], 1e9), r["p50_ms"])
            if "memoryd" in best:
                ratios = ", ".join(f"{k} {best['memoryd'] / v:.2f}x" for k, v in best.items() if k != "memoryd")
                out.append(f"\nAt recall@10 >= {target}: memoryd p50 {best['memoryd']:.3f} ms; memoryd/peer latency: {ratios or 'no peer reached it'}\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--json", help="write raw rows here")
    a = ap.parse_args()
    embed_rows = [] if a.skip_embed else run_embed(a.rounds)
    index_rows = [] if a.skip_index else run_index(a.n)
    if a.json:
        json.dump({"embed": embed_rows, "index": index_rows}, open(a.json, "w"), indent=1)
    print(report(embed_rows, index_rows))


if __name__ == "__main__":
    sys.exit(main())
