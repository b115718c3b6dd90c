"""Embedding throughput: questlab's SentenceEncoder vs ``SentenceTransformer.encode``, same model, same texts.

Each measurement runs in its own child process (so each gets its own peak RSS), alternating
ours / theirs for ``--rounds`` rounds so machine contention hits both alike; the best round
of each is compared. Both use the same number of torch threads and the same token budget
(256 for MiniLM: the model's ``max_seq_length``); ours keeps head + tail of longer texts,
theirs the head: the same cost.

    PYTHONPATH=src python bench/embedding_throughput.py --train ../shared/quest/train.csv --n 512
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time


def _texts(path: str, n: int, part: str) -> list[str]:
    from questlab.data import load_train

    frame = load_train(path)
    if part == "answer":
        return frame["answer"].head(n).tolist()
    return (frame["question_title"] + "\n\n" + frame["question_body"]).head(n).tolist()


def _run(which: str, encoder: str, texts: list[str], batch: int, max_tokens: int, threads: int, queue) -> None:
    import torch

    from questlab.models.embedding.encoder import EncoderSettings, SentenceEncoder

    torch.set_num_threads(threads)
    if which == "questlab":
        enc = SentenceEncoder(encoder, EncoderSettings(max_tokens=max_tokens), batch_size=batch, threads=threads)
        enc.encode(texts[:batch], progress=False)  # warm-up (weights load, kernels)

        def fn():
            enc.encode(texts, progress=False)
    else:
        from sentence_transformers import SentenceTransformer

        from questlab.models.pretrained import resolve_encoder

        st = SentenceTransformer(str(resolve_encoder(encoder)), device="cpu")
        st.max_seq_length = max_tokens
        st.encode(texts[:batch], batch_size=batch)

        def fn():
            st.encode(texts, batch_size=batch, show_progress_bar=False)

    t0 = time.perf_counter()
    fn()
    secs = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    queue.put((which, len(texts) / secs, peak_mib, torch.get_num_threads()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=512, help="number of texts")
    ap.add_argument("--part", choices=["answer", "title_body"], default="answer")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: from the load average)")
    args = ap.parse_args()
    from questlab.models.embedding.encoder import pick_threads

    threads = pick_threads(args.threads)  # the same for both sides: the comparison is of the code
    texts = _texts(args.train, args.n, args.part)
    ctx = mp.get_context("spawn")
    results: dict[str, list[tuple[float, float]]] = {"questlab": [], "sentence-transformers": []}
    for r in range(args.rounds):
        for which in results:
            q = ctx.Queue()
            p = ctx.Process(target=_run, args=(which, args.encoder, texts, args.batch, args.max_tokens, threads, q))
            p.start()
            name, rate, peak, threads = q.get()
            p.join()
            results[name].append((rate, peak))
            print(f"round {r}: {name:<22} {rate:7.1f} seq/s  peak RSS {peak:6.0f} MiB  ({threads} threads)", flush=True)
    ours = max(x[0] for x in results["questlab"])
    theirs = max(x[0] for x in results["sentence-transformers"])
    print(
        f"\n{args.encoder}, {len(texts)} {args.part} texts, batch {args.batch}, {args.max_tokens} tokens, "
        f"{threads} thread(s):\n"
        f"  questlab              {ours:7.1f} seq/s  peak RSS {max(x[1] for x in results['questlab']):6.0f} MiB\n"
        f"  sentence-transformers {theirs:7.1f} seq/s  peak RSS "
        f"{max(x[1] for x in results['sentence-transformers']):6.0f} MiB\n"
        f"  ratio {ours / theirs:.2f}x"
    )


if __name__ == "__main__":
    main()
