"""Which MiniLM layers carry ELL's signal: a ridge (and an RBF kernel ridge with the style features)
on each hidden layer's mean-pooled vectors of the essays, and on their mean.

Usage:
    PYTHONPATH=src python bench/ell_layers.py [--train ../shared/ell/train.csv] [--seed 7]
        [--max-tokens 256] [--cache /tmp/questlab_ell_bench] [--encoder minilm] [--long-text chunks]

Each essay is cut into equal windows of <= max-tokens tokens (as ``long_text: chunks``); every
layer's tokens (the window's content, special tokens left out) are averaged per window, and the
windows per essay weighted by their token counts; cached as one (essays, layers, dim) .npy. The views: each
layer alone, and the mean of the first k layers (what ``depth: k`` with ``layers: mean`` pools). Folds:
StratifiedKFold on the deciles of the row-mean target, ``--seed`` (7: the split the settings of
``layers: mean`` were chosen on; the reported figures use 42). Models and their leave-one-out
choices are those of bench/ell_reference.py; the validation fold is only scored.

Measured (2026-12-07, 2 shared cores, folds seed 7, MCRMSE): ridge per layer 0 (the input
embeddings) 0.5450, 1 0.5333, 2 0.5170, 3 0.5087, 4 0.5090, 5 0.5220, 6 (the last) 0.5484; the mean
of layers 1-6 0.5106; with the style features under the RBF kernel ridge: last layer 0.5178, the
mean 0.4962. Embedding took 802 s at load ~5.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from ell_reference import ROOT, TARGETS, DualRidge, linear_kernels, make_folds, mcrmse, rbf_kernels, standardise
from threadpoolctl import threadpool_limits

from questlab.models.text_features import default_vocabulary, text_features


def layer_vectors(
    texts: list[str], max_tokens: int, cache: Path, encoder: str = "minilm", long_text: str = "chunks"
) -> np.ndarray:
    """(essays, layers + 1, dim) mean-pooled hidden states of ``encoder``, windows averaged by tokens."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from questlab.models.embedding.encoder import EncoderSettings, SentenceEncoder, same_length_batches

    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    stem = "minilm" if encoder == "minilm" else encoder.replace("/", "_")
    suffix = "" if long_text == "chunks" else f"_{long_text}"
    path = cache / f"{stem}_layers_t{max_tokens}{suffix}_{digest}.npy"
    if path.exists():
        return np.load(path)
    enc = SentenceEncoder(encoder, EncoderSettings(max_tokens=max_tokens, long_text=long_text))
    windows, owner = [], []
    for i, ids in enumerate(enc.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]):
        for w in enc._windows(ids):
            windows.append(enc._prefix + w + enc._suffix)
            owner.append(i)
    pooled = np.zeros((len(windows), enc.model.config.num_hidden_layers + 1, enc.dim), np.float32)
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=enc._bf16):
        for idx in same_length_batches([len(w) for w in windows], 16):
            x = torch.tensor([windows[j] for j in idx])
            states = enc.model(input_ids=x, attention_mask=torch.ones_like(x), output_hidden_states=True).hidden_states
            pooled[idx] = torch.stack([h.float() for h in states], 1)[:, :, 1:-1].mean(2).numpy()
    print(f"embedded {len(windows)} windows in {time.perf_counter() - start:.0f} s", flush=True)
    weights = np.array([len(w) - 2 for w in windows], float)
    out = np.zeros((len(texts), *pooled.shape[1:]), np.float32)
    np.add.at(out, np.array(owner), pooled * weights[:, None, None])
    out /= np.bincount(owner, weights)[:, None, None]
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=str(ROOT.parent / "shared" / "ell" / "train.csv"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--cache", default="/tmp/questlab_ell_bench")
    ap.add_argument("--encoder", default="minilm", help="minilm | all-mpnet-base-v2 | a model folder")
    ap.add_argument("--long-text", default="chunks", choices=["chunks", "head_tail"])
    args = ap.parse_args()
    frame = pd.read_csv(args.train)
    texts = frame["full_text"].tolist()
    y = frame[list(TARGETS)].to_numpy(float)
    vectors = layer_vectors(texts, args.max_tokens, Path(args.cache), args.encoder, args.long_text)
    feats = text_features(texts, default_vocabulary())
    fold = make_folds(y, 5, seed=args.seed)
    last = vectors.shape[1] - 1
    views = {f"layer {k}": vectors[:, k] for k in range(last + 1)}
    firsts = range(2, last + 1, 1 if last <= 6 else 2)  # the mean of the first k layers: a truncated encoder
    views |= {f"mean of 1..{k}": vectors[:, 1 : k + 1].mean(1) for k in firsts}
    oof: dict[str, np.ndarray] = {}
    for k in range(5):
        tr, va = fold != k, fold == k
        f_tr, f_va = standardise(feats[tr], feats[va])
        for name, x in views.items():
            z_tr, z_va = standardise(x[tr], x[va])
            k_tr, k_va = linear_kernels(z_tr / np.sqrt(z_tr.shape[1]), z_va / np.sqrt(z_tr.shape[1]))
            oof.setdefault(f"{name} ridge", np.zeros_like(y))[va] = DualRidge(k_tr, y[tr]).predict(k_va)
            if name.startswith("mean of 1..") or name == f"layer {last}":
                zf_tr, zf_va = np.hstack([z_tr, f_tr]), np.hstack([z_va, f_va])
                fits = [(DualRidge(a, y[tr]), b) for a, b in (rbf_kernels(zf_tr, zf_va, g / zf_tr.shape[1])
                                                              for g in (0.05, 0.1, 0.25))]  # fmt: skip
                loo = np.array([f.loo_mse for f, _ in fits])  # (widths, targets): per target the best
                pred = np.array([f.predict(b) for f, b in fits])
                oof.setdefault(f"{name} + features rbf", np.zeros_like(y))[va] = pred[loo.argmin(0), :, range(6)].T
        print(f"fold {k} done", flush=True)
    for name, p in oof.items():
        print(f"{name:<32} {mcrmse(y, np.clip(p, 1, 5))[0]:.4f}")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
