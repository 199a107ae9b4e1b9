"""Appendix C: vector-search latency as the collection grows, and (with --retrieval) the retrieval table on the GPL-3.

Latency: indexes of 1k, 10k and 100k random unit vectors (standard-normal draws, normalised; 384-d like MiniLM and
bge-small), searched for the top 5 with one random unit query, repeated: the book's brute force (`util.pytorch_cos_sim`
+ `topk`, which re-normalises the collection on each call), a brute force on pre-normalised vectors (`matrix @ query`
+ `topk`), faiss IndexFlatIP (exact) and faiss IndexHNSWFlat (M=32, efConstruction 40) searched with efSearch 16
(faiss's default), 64 and 256. HNSW's recall of the exact top 5 is measured over 48 random queries at each efSearch,
and its build time is reported. Times are medians of `--repeats` calls; torch and faiss use `--threads` threads.

Retrieval (--retrieval): recall@1/3/5 and MRR of all-MiniLM-L6-v2 on the 48-question GPL-3 set for chunk sizes 250,
500 and 1000 with 0% and 20% overlap (the hit rule is `genaibook.rag.passage_hit`).

Usage: python bench/rag.py [--threads 2] [--repeats 50] [--sizes 1000 10000 100000] [--retrieval]
Writes bench/results/rag.json.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

from genaibook.offline import quiet_libraries, use_offline_cache

HOME = use_offline_cache()  # before any Hugging Face library is imported
RESULTS = Path(__file__).parent / "results" / "rag.json"
DIM, TOP_K, N_QUERIES = 384, 5, 48
EF_SEARCH = (16, 64, 256)  # HNSW search widths; 16 is faiss's default


def time_size(n: int, repeats: int) -> dict:
    "Median ms per single-query search for each method over `n` random unit vectors, plus HNSW's build time and recall."
    import numpy as np
    import torch
    from sentence_transformers import util

    from genaibook.rag import FaissStore, median_ms, random_unit_vectors

    vectors, queries = random_unit_vectors(n, DIM, seed=n), random_unit_vectors(N_QUERIES, DIM, seed=1)
    tensor, q = torch.from_numpy(vectors), queries[:1]
    flat = FaissStore(DIM).add(vectors)
    start = time.perf_counter()
    hnsw = FaissStore(DIM, kind="hnsw").add(vectors)
    build_s = time.perf_counter() - start
    row = {
        "vectors": n,
        "float32_mb": round(vectors.nbytes / 1e6, 1),
        "book_cos_sim_ms": median_ms(lambda: util.pytorch_cos_sim(torch.from_numpy(q), tensor)[0].topk(TOP_K), repeats),
        "matmul_ms": median_ms(lambda: (tensor @ torch.from_numpy(q[0])).topk(TOP_K), repeats),
        "faiss_flat_ms": median_ms(lambda: flat.search(q, TOP_K), repeats),
        "hnsw_build_s": build_s,
    }
    exact = flat.search(queries, TOP_K)[1]
    for ef in EF_SEARCH:
        approx = hnsw.set_ef_search(ef).search(queries, TOP_K)[1]
        row[f"hnsw_ef{ef}_ms"] = median_ms(lambda: hnsw.search(q, TOP_K), repeats)
        row[f"hnsw_ef{ef}_recall_at_5"] = float(np.mean([len(set(a) & set(e)) / TOP_K for a, e in zip(approx, exact)]))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def retrieval_table() -> list[dict]:
    "Recall@k and MRR of MiniLM on the GPL-3 question set for three chunk sizes with and without a 20% overlap."
    from sentence_transformers import SentenceTransformer

    from genaibook.rag import chunk_documents, embed, evaluate_retrieval, gpl3_pdf, load_pdf, load_qa

    with quiet_libraries():
        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    docs, qa = load_pdf(gpl3_pdf()), load_qa()
    questions = embed(model, [item["question"] for item in qa])
    rows = []
    for size in (250, 500, 1000):
        for overlap in (0, size // 5):
            chunks = chunk_documents(docs, size, overlap)
            metrics = evaluate_retrieval(qa, chunks, embed(model, chunks), questions)
            rows.append({"chunk_size": size, "chunk_overlap": overlap, **{k: round(v, 4) for k, v in metrics.items()}})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--retrieval", action="store_true", help="also measure the retrieval table (loads MiniLM)")
    args = parser.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    result = {
        "dim": DIM,
        "top_k": TOP_K,
        "queries": "one at a time; random unit vectors",
        "vectors": "random unit vectors (standard-normal draws, normalised)",
        "threads": args.threads,
        "repeats": args.repeats,
        "latency": [time_size(n, args.repeats) for n in args.sizes],
    }
    if args.retrieval:
        result["retrieval_minilm_gpl3"] = retrieval_table()
    result.update(
        load_average_1min=round(os.getloadavg()[0], 2),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        faiss=faiss.__version__,
        torch=torch.__version__,
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
