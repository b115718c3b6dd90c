"""Reference CV figures on Feedback Prize - ELL: which cheap ingredients reach MCRMSE <= 0.490 on 2 cores.

Usage:
    PYTHONPATH=src python bench/ell_reference.py [--train ../shared/ell/train.csv] [--rows N] [--folds 5]
        [--embed chunks256[,headtail512] | --embed ''] [--cache /tmp/questlab_ell_bench]

Folds: StratifiedKFold(shuffle=True, random_state=42) on the deciles of the row-mean target.
Every model is a ridge in its dual form (kernel ridge on a centred kernel = ridge with an
unpenalised intercept): one eigendecomposition of the training fold's kernel gives the exact
leave-one-out predictions for every alpha of the grid, so alpha (per target), the RBF width,
the weight of the text features in a stacked kernel and the blend weights are all chosen on the
training fold's leave-one-out predictions; the validation fold is only predicted and scored.
(LOO predictions of a model whose alpha was picked on them are a little optimistic as inputs of
a blend or stack, but they never saw the validation fold.) Predictions are clipped to [1, 5].

TF-IDF: words 1-2 grams (min_df 2) + char_wb 2-5 grams (min_df 3), sublinear tf, l2 rows; the
n-grams are counted once for all texts, and each fold's vocabulary, idf and weights come from its
training rows only (the same matrices TfidfVectorizer fitted on those rows gives, up to 1e-14).
MiniLM: questlab's SentenceEncoder (bf16 autocast where the CPU has it), each essay cut into
equal windows of <= 256 tokens, vectors averaged by token count; cached as .npy under --cache.
BLAS runs on one thread (the eigendecompositions dominate the time).

Measured (questlab 0.10.0 + text_features, all 3,911 essays, 5 folds, shared 2-core machine at
load 3-5, 622 s wall with the MiniLM vectors cached; embedding them took 881 s at load ~10):
    means 0.6529 | tfidf ridge 0.5217 | features ridge 0.5379 | features rbf 0.5314
    tfidf+features ridge 0.5065 | minilm ridge 0.5465 | minilm rbf 0.5437 | minilm+features rbf 0.5177
    tfidf+features+minilm joint kernel 0.5033 | blend (all) 0.5023 | stack (all, 6 targets) 0.4979
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import nnls
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from questlab.models.text_features import default_vocabulary, text_features

TARGETS = ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")
ALPHAS = np.logspace(-3, 4, 29)
ROOT = Path(__file__).resolve().parents[1]


def mcrmse(y: np.ndarray, p: np.ndarray) -> tuple[float, np.ndarray]:
    per = np.sqrt(((y - p) ** 2).mean(axis=0))
    return float(per.mean()), per


def make_folds(y: np.ndarray, n_splits: int, seed: int = 42) -> np.ndarray:
    bins = pd.qcut(y.mean(axis=1), q=10, labels=False, duplicates="drop")
    fold = np.zeros(len(y), dtype=int)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, va) in enumerate(splitter.split(np.zeros(len(y)), bins)):
        fold[va] = k
    return fold


class DualRidge:
    """Kernel ridge with intercept, alpha per target picked by exact leave-one-out on the fit rows."""

    def __init__(self, k_tr: np.ndarray, y: np.ndarray) -> None:
        n = len(k_tr)
        self.col_mean, self.all_mean = k_tr.mean(axis=0), k_tr.mean()
        kc = k_tr - self.col_mean[None, :] - self.col_mean[:, None] + self.all_mean
        e, v = np.linalg.eigh(kc)
        e = np.clip(e, 0, None)
        self.y_mean = y.mean(axis=0)
        vty = v.T @ (y - self.y_mean)  # (n, t)
        shrink = e[:, None] / (e[:, None] + ALPHAS[None, :])  # (n, a)
        # centred fitted values for every alpha at once: (n, a, t)
        fitted = (v @ (shrink[:, :, None] * vty[:, None, :]).reshape(n, -1)).reshape(n, len(ALPHAS), -1)
        lev = 1.0 / n + (v**2) @ shrink  # (n, a) hat diagonal (the intercept's 1/n included)
        resid = (y[:, None, :] - self.y_mean - fitted) / (1 - lev)[:, :, None]  # exact LOO residuals
        self.best = np.argmin((resid**2).mean(axis=0), axis=0)  # (t,) alpha index per target
        chosen = resid[:, self.best, np.arange(y.shape[1])]
        self.loo_pred, self.loo_mse = y - chosen, (chosen**2).mean(axis=0)
        self.coef = v @ (vty / (e[:, None] + ALPHAS[self.best][None, :]))  # (n, t) dual coefficients

    def predict(self, k_va: np.ndarray) -> np.ndarray:
        kc = k_va - self.col_mean[None, :] - k_va.mean(axis=1, keepdims=True) + self.all_mean
        return self.y_mean + kc @ self.coef


def standardise(x_tr: np.ndarray, x_va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd[sd == 0] = 1
    return (x_tr - mu) / sd, (x_va - mu) / sd


def linear_kernels(x_tr, x_va) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation Gram matrices of x; sparse x: its frequent columns multiplied densely."""
    if not sparse.issparse(x_tr):
        return x_tr @ x_tr.T, x_va @ x_tr.T
    x_tr, x_va = x_tr.tocsc(), x_va.tocsc()
    dense = np.flatnonzero(np.diff(x_tr.indptr) > 0.02 * x_tr.shape[0])  # sparse products cost df^2 per column
    rest = np.setdiff1d(np.arange(x_tr.shape[1]), dense)
    d_tr, d_va = x_tr[:, dense].toarray().astype(np.float32), x_va[:, dense].toarray().astype(np.float32)
    s_tr, s_va = x_tr[:, rest].tocsr(), x_va[:, rest].tocsr()
    k_tr = (d_tr @ d_tr.T).astype(np.float64) + (s_tr @ s_tr.T).toarray()
    k_va = (d_va @ d_tr.T).astype(np.float64) + (s_va @ s_tr.T).toarray()
    return k_tr, k_va


def rbf_kernels(z_tr: np.ndarray, z_va: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    def sq(a, b):
        return np.clip((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T, 0, None)

    return np.exp(-gamma * sq(z_tr, z_tr)), np.exp(-gamma * sq(z_va, z_tr))


def count_matrices(texts: list[str]) -> dict[str, sparse.csr_matrix]:
    """Raw n-gram counts of every text, once: each fold's TF-IDF is then built from its own rows only."""
    words = CountVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w\w+\b", dtype=np.float64)
    chars = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), dtype=np.float64)
    return {"words": words.fit_transform(texts).tocsc(), "chars": chars.fit_transform(texts).tocsc()}


def tfidf_fold(counts: sparse.csc_matrix, tr: np.ndarray, va: np.ndarray, min_df: int, max_features: int):
    """What TfidfVectorizer(min_df, max_features, sublinear_tf=True) fitted on the rows ``tr`` gives, for tr and va."""
    c_tr = counts[tr].tocsc()
    df = np.diff(c_tr.indptr)
    keep = np.flatnonzero(df >= min_df)
    if len(keep) > max_features:  # TfidfVectorizer keeps the most frequent terms (by corpus count)
        total = np.asarray(c_tr[:, keep].sum(axis=0)).ravel()
        keep = np.sort(keep[np.argsort(-total, kind="stable")[:max_features]])
    idf = np.log((1 + c_tr.shape[0]) / (1 + df[keep])) + 1  # smooth_idf
    out = []
    for rows in (tr, va):
        x = counts[rows][:, keep].tocsr()
        x.data = 1 + np.log(x.data)
        x = x @ sparse.diags(idf)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        out.append(sparse.diags(1 / np.maximum(norms, 1e-12)) @ x)
    return out


def tfidf_kernels(counts: dict[str, sparse.csc_matrix], tr: np.ndarray, va: np.ndarray):
    kw = linear_kernels(*tfidf_fold(counts["words"], tr, va, min_df=2, max_features=100_000))
    kc = linear_kernels(*tfidf_fold(counts["chars"], tr, va, min_df=3, max_features=200_000))
    return kw[0] + kc[0], kw[1] + kc[1]


def best_of(
    candidates: dict[str, tuple[np.ndarray, np.ndarray]], y_tr: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """Fit a DualRidge per candidate kernel; per target keep the one with the lowest LOO error.

    Returns the training rows' LOO predictions, the validation predictions and the picks.
    """
    fits = {name: (DualRidge(k_tr, y_tr), k_va) for name, (k_tr, k_va) in candidates.items()}
    names = list(fits)
    loo = np.array([fits[n][0].loo_mse for n in names])  # (c, t)
    pick = loo.argmin(axis=0)
    cols = np.arange(y_tr.shape[1])
    pred = np.array([fits[n][0].predict(fits[n][1]) for n in names])[pick, :, cols].T
    loo_pred = np.array([fits[n][0].loo_pred for n in names])[pick, :, cols].T
    return loo_pred, pred, ",".join(names[i] for i in pick)


def blend(loo_preds: list[np.ndarray], preds: list[np.ndarray], y_tr: np.ndarray) -> np.ndarray:
    """Per target: non-negative weights summing to 1 on the training fold's LOO predictions."""
    out = np.zeros_like(preds[0])
    for t in range(y_tr.shape[1]):
        a = np.column_stack([p[:, t] for p in loo_preds])
        w, _ = nnls(np.vstack([a, 1e3 * np.ones(a.shape[1])]), np.append(y_tr[:, t], 1e3))
        out[:, t] = np.column_stack([p[:, t] for p in preds]) @ w
    return out


def stack(loo_preds: list[np.ndarray], preds: list[np.ndarray], y_tr: np.ndarray) -> np.ndarray:
    """Per target a ridge on every model's LOO predictions of all six targets (alpha by its own LOO)."""
    a, b = np.hstack(loo_preds), np.hstack(preds)
    a_s, b_s = standardise(a, b)
    ridge = DualRidge(a_s @ a_s.T / a.shape[1], y_tr)
    return ridge.predict(b_s @ a_s.T / a.shape[1])


def minilm_vectors(texts: list[str], cache: Path, max_tokens: int, long_text: str) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from questlab.models.embedding.encoder import EncoderSettings, SentenceEncoder

    settings = EncoderSettings(max_tokens=max_tokens, long_text=long_text)  # type: ignore[arg-type]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    path = cache / f"minilm_{settings.key()}_{digest}.npy"
    if path.exists():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    vectors = SentenceEncoder("minilm", settings).encode(texts, progress=False).vectors
    print(f"  embedded {len(texts)} texts ({settings.key()}) in {time.perf_counter() - start:.0f} s", flush=True)
    np.save(path, vectors)
    return vectors


class Clock:
    """Seconds spent per name, summed over folds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def run_fold(tr, va, y, counts, feats, vectors, clock: Clock) -> dict[str, np.ndarray]:
    """Validation predictions of every model on one fold (everything chosen on the rows ``tr``)."""
    y_tr = y[tr]
    loo: dict[str, np.ndarray] = {}
    pred: dict[str, np.ndarray] = {}

    def fit(name: str, kernels: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
        with clock(name):
            loo[name], pred[name], picked = best_of(kernels, y_tr)
        return picked

    pred["means"] = np.repeat(y_tr.mean(0, keepdims=True), va.sum(), 0)
    with clock("tfidf ridge"):
        k_tfidf = tfidf_kernels(counts, tr, va)
    fit("tfidf ridge", {"tfidf": k_tfidf})
    with clock("features ridge"):
        f_tr, f_va = standardise(feats[tr], feats[va])
        k_feat = linear_kernels(f_tr / np.sqrt(f_tr.shape[1]), f_va / np.sqrt(f_tr.shape[1]))
    fit("features ridge", {"feat": k_feat})
    with clock("features rbf krr"):
        rbf = {f"g{g:g}/d": rbf_kernels(f_tr, f_va, g / f_tr.shape[1]) for g in (0.03, 0.1)}
    notes = [f"features rbf {fit('features rbf krr', rbf)}"]
    stacks = {f"w{w:g}": (k_tfidf[0] + w * k_feat[0], k_tfidf[1] + w * k_feat[1]) for w in (0.1, 0.2, 0.4)}
    notes.append(f"tfidf+features weight {fit('tfidf+features ridge', stacks)}")
    for key, vec in vectors.items():
        z_tr, z_va = standardise(vec[tr], vec[va])
        d = z_tr.shape[1]
        fit(f"{key} ridge", {"lin": linear_kernels(z_tr / np.sqrt(d), z_va / np.sqrt(d))})
        with clock(f"{key} rbf krr"):
            rbf = {f"g{g:g}/d": rbf_kernels(z_tr, z_va, g / d) for g in (0.1, 0.25)}
        notes.append(f"{key} rbf {fit(f'{key} rbf krr', rbf)}")
        zf_tr, zf_va = np.hstack([z_tr, f_tr]), np.hstack([z_va, f_va])
        with clock(f"{key}+features rbf krr"):
            rbf = {f"g{g:g}/d": rbf_kernels(zf_tr, zf_va, g / zf_tr.shape[1]) for g in (0.1, 0.25)}
        notes.append(f"{key}+features rbf {fit(f'{key}+features rbf krr', rbf)}")
        # one ridge on the sum of the three views' kernels (multiple-kernel ridge, weights on the LOO)
        k_e = rbf["g0.25/d"]
        joint = {
            f"f{a:g},e{b:g}": (k_tfidf[0] + a * k_feat[0] + b * k_e[0], k_tfidf[1] + a * k_feat[1] + b * k_e[1])
            for a, b in ((0.2, 1.0), (0.2, 2.0), (0.4, 2.0), (0.2, 4.0))
        }
        notes.append(f"tfidf+features+{key} {fit(f'tfidf+features+{key} joint kernel', joint)}")
    print("  " + "; ".join(notes), flush=True)
    names = [n for n in loo if n != "means"]
    with clock("blend (all)"):
        pred["blend (all)"] = blend([loo[n] for n in names], [pred[n] for n in names], y_tr)
    best_two = ["tfidf+features ridge", *[n for n in names if n.endswith("+features rbf krr")][:1]]
    if len(best_two) == 2:
        with clock("blend (tfidf+feat, emb+feat rbf)"):
            pred["blend (tfidf+feat, emb+feat rbf)"] = blend(
                [loo[n] for n in best_two], [pred[n] for n in best_two], y_tr
            )
    with clock("stack (all, 6 targets)"):
        pred["stack (all, 6 targets)"] = stack([loo[n] for n in names], [pred[n] for n in names], y_tr)
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=str(ROOT.parent / "shared" / "ell" / "train.csv"))
    ap.add_argument("--rows", type=int, default=0, help="use only the first N rows (0: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--embed", default="chunks256", help="comma-separated MiniLM variants: chunks256, headtail512 ('' for none)"
    )
    ap.add_argument("--cache", default="/tmp/questlab_ell_bench", help="folder of the cached MiniLM vectors")
    args = ap.parse_args()
    frame = pd.read_csv(args.train)
    if args.rows:
        frame = frame.head(args.rows).reset_index(drop=True)
    texts = frame["full_text"].tolist()
    y = frame[list(TARGETS)].to_numpy(dtype=float)
    fold = make_folds(y, args.folds)
    print(f"{len(y)} essays; folds: StratifiedKFold({args.folds}, shuffle=True, random_state=42) on the deciles "
          f"of the row-mean target; sizes {np.bincount(fold).tolist()}")  # fmt: skip
    print(f"alpha: {len(ALPHAS)} values 1e-3..1e4 per target, by exact LOO on the training fold; so are kernel")
    print("choices and blend weights (non-negative, summing to 1); the validation fold is only scored")
    clock = Clock()
    with clock("features (all texts)"):
        feats = text_features(texts, default_vocabulary())
    with clock("n-gram counts (all texts)"):
        counts = count_matrices(texts)
    variants = {"chunks256": (256, "chunks"), "headtail512": (512, "head_tail")}
    vectors = {}
    for key in filter(None, args.embed.split(",")):
        with clock(f"embed {key} (all texts)"):
            vectors[f"minilm {key}"] = minilm_vectors(texts, Path(args.cache), *variants[key])
    oof: dict[str, np.ndarray] = {}
    for k in range(args.folds):
        start = time.perf_counter()
        for name, p in run_fold(fold != k, fold == k, y, counts, feats, vectors, clock).items():
            oof.setdefault(name, np.zeros_like(y))[fold == k] = p
        print(f"  fold {k} done in {time.perf_counter() - start:.0f} s", flush=True)

    header = " ".join(f"{t[:6]:>6}" for t in TARGETS)
    print(f"\n{'model':<44} {'MCRMSE':>7}  {header}  seconds ({args.folds} folds)")
    for name, p in oof.items():
        score, per = mcrmse(y, np.clip(p, 1, 5))
        cells = " ".join(f"{x:6.4f}" for x in per)
        print(f"{name:<44} {score:7.4f}  {cells}  {clock.seconds.get(name, 0):7.1f}")
    print("one-off: " + ", ".join(f"{k} {v:.1f} s" for k, v in clock.seconds.items() if k not in oof))
    print("seconds of a stacked or blended model exclude those of its parts (TF-IDF kernels: 'tfidf ridge')")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
