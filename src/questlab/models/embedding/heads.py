"""Heads over the (embeddings + features) matrix: per-target ridge, a small bagged PyTorch MLP,
their weighted blend, and an RBF kernel ridge (``kernel_head``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from questlab.errors import RunFormatError
from questlab.metrics import get_metric
from questlab.models.base import FitLog, ModelParams, UnitScorer
from questlab.models.embedding.encoder import pick_threads, torch_threads
from questlab.models.embedding.kernel_head import KernelRidgeHead


def _default_scorer(n_targets: int) -> UnitScorer:
    """QUEST's: Spearman on targets in [0, 1]."""
    return UnitScorer(get_metric("spearman"), np.zeros(n_targets), np.ones(n_targets))


class RidgeHead:
    """One closed-form ridge per target (sklearn's multi-output Ridge), outputs clipped to [0, 1].

    ``alpha="auto"``: each target's alpha out of ``alphas`` by exact leave-one-out on the rows it
    is fitted on (sklearn's RidgeCV, alpha_per_target); the valid rows are only scored.
    """

    kind = "ridge"

    def __init__(self, alpha: float | str, alphas: list[float] | None = None) -> None:
        self.alpha = alpha
        self.alphas = alphas

    def fit(
        self,
        x,
        y,
        x_valid,
        y_valid,
        log: FitLog,
        group: int = 0,
        stop_rows: list[np.ndarray] | None = None,
        scorer: UnitScorer | None = None,
    ) -> RidgeHead:
        """One fit on all of ``x`` (no epochs, so ``stop_rows`` is not used); logs one entry (MSE
        losses, valid score of ``scorer``: QUEST's Spearman by default); ``group`` tags the entry."""
        from sklearn.linear_model import Ridge, RidgeCV

        scorer = scorer or _default_scorer(y.shape[1])
        if self.alpha == "auto":
            self.model_ = RidgeCV(alphas=self.alphas, alpha_per_target=True).fit(x, y)
            log.info["ridge_alpha"] = np.ravel(self.model_.alpha_).tolist()
        else:
            self.model_ = Ridge(alpha=self.alpha).fit(x, y)
        entry = {"group": group, "epoch": 0, "train_loss": float(np.mean((self.predict(x) - y) ** 2))}
        if x_valid is not None:
            pred = self.predict(x_valid)
            entry |= {"valid_loss": float(np.mean((pred - y_valid) ** 2)), "valid_score": scorer.score(y_valid, pred)}
        log.log_epoch(**entry)
        log.info["head_note"] = "ridge: one closed-form fit (a single log entry; losses are MSE)"
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        # Clipping ties a few extreme rows; ridge outputs stray only slightly outside [0, 1].
        return np.clip(self.model_.predict(x), 0.0, 1.0)

    def save(self, folder: Path) -> None:
        np.savez(folder / "ridge.npz", coef=self.model_.coef_, intercept=self.model_.intercept_)
        (folder / "head.json").write_text(json.dumps({"kind": self.kind, "alpha": self.alpha}))

    @classmethod
    def load(cls, folder: Path) -> RidgeHead:
        from sklearn.linear_model import Ridge

        meta = json.loads((folder / "head.json").read_text())
        head = cls(meta["alpha"])
        arrays = np.load(folder / "ridge.npz")
        head.model_ = Ridge(alpha=head.alpha if head.alpha != "auto" else 1.0)  # only coef_ predicts
        head.model_.coef_, head.model_.intercept_ = arrays["coef"], arrays["intercept"]
        head.model_.n_features_in_ = head.model_.coef_.shape[1]
        return head


def _mlp(n_in: int, hidden: int, dropout: float, n_out: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Dropout(dropout / 2), nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )


class MLPHead:
    """``n_seeds`` MLPs (BCE-with-logits on the soft targets, AdamW), each early-stopped on the
    valid mean Spearman and restored to its best epoch; predictions are their mean probability."""

    kind = "mlp"

    def __init__(self, params: ModelParams) -> None:
        self.p = params

    def fit(
        self,
        x,
        y,
        x_valid,
        y_valid,
        log: FitLog,
        group: int = 0,
        stop_rows: list[np.ndarray] | None = None,
        scorer: UnitScorer | None = None,
    ) -> MLPHead:
        """Train ``n_seeds`` nets; one log entry per epoch and net, tagged with ``group``.

        Early stopping watches, per net: ``stop_rows[k]`` of ``x`` when given (a list of boolean
        masks, one per net; those rows are then not trained on by that net, so each net of the
        bag may hold out different questions), else ``x_valid``, else a random 10% of ``x``. The
        epoch kept is the best by ``scorer`` (the task's metric; QUEST's Spearman by default).
        """
        if stop_rows is not None:
            if len(stop_rows) != self.p.n_seeds:
                raise ValueError(f"stop_rows: {len(stop_rows)} masks for {self.p.n_seeds} nets")
            for mask in stop_rows:
                if np.shape(mask) != (len(x),) or np.all(mask) or not np.any(mask):
                    raise ValueError(f"stop_rows: each mask must mark some, not all, of the {len(x)} rows")
        with torch_threads(pick_threads(self.p.threads)):
            return self._fit(x, y, x_valid, y_valid, log, group, stop_rows, scorer or _default_scorer(y.shape[1]))

    def _fit(
        self, x, y, x_valid, y_valid, log: FitLog, group: int, stop_rows: list[np.ndarray] | None, scorer: UnitScorer
    ) -> MLPHead:
        import torch

        if stop_rows is None and x_valid is None:
            # No valid rows (a fit on everything): hold out 10% of rows for early stopping only.
            rng = np.random.default_rng(self.p.seed)
            stop_rows = [rng.random(len(x)) < 0.1] * self.p.n_seeds
        self.n_in_, self.n_out_ = x.shape[1], y.shape[1]
        self.nets_ = []
        best_epochs = []
        for k in range(self.p.n_seeds):
            if stop_rows is None:
                x_fit, y_fit, x_stop, y_stop = x, y, x_valid, y_valid
            else:
                hold = np.asarray(stop_rows[k], dtype=bool)
                x_fit, y_fit, x_stop, y_stop = x[~hold], y[~hold], x[hold], y[hold]
            xt, yt, xv, yv = map(torch.tensor, (x_fit, y_fit, x_stop, y_stop))
            torch.manual_seed(self.p.seed + k)
            gen = torch.Generator().manual_seed(self.p.seed + k)
            net = _mlp(self.n_in_, self.p.hidden, self.p.dropout, self.n_out_)
            # fused: one kernel per step instead of a loop of small ops; the same updates to 2e-7
            # and 15% less head time (2,585 steps on 2 cores: 11.6 s instead of 13.7 s)
            opt = torch.optim.AdamW(net.parameters(), lr=self.p.lr, weight_decay=self.p.weight_decay, fused=True)
            loss_fn = torch.nn.BCEWithLogitsLoss()
            best, best_state, best_epoch, waited = None, None, 0, 0
            for epoch in range(self.p.max_epochs):
                net.train()
                total = 0.0
                for idx in torch.randperm(len(xt), generator=gen).split(self.p.batch_size):
                    loss = loss_fn(net(xt[idx]), yt[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                net.eval()
                with torch.inference_mode():
                    logits = net(xv)
                    valid_loss = float(loss_fn(logits, yv))
                score = scorer.score(y_stop, torch.sigmoid(logits).numpy())
                log.log_epoch(
                    group=group,
                    seed=k,
                    epoch=epoch,
                    train_loss=total / len(xt),
                    valid_loss=valid_loss,
                    valid_score=score,
                )
                if scorer.improves(score, best):
                    best, best_state, best_epoch, waited = score, copy.deepcopy(net.state_dict()), epoch, 0
                else:
                    waited += 1
                    if waited >= self.p.patience:
                        break
            net.load_state_dict(best_state)
            net.eval()
            self.nets_.append(net)
            best_epochs.append(best_epoch)
        log.info.setdefault("best_epochs", []).extend(best_epochs)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            probs = [torch.sigmoid(net(xt)).numpy() for net in self.nets_]
        return np.mean(probs, axis=0).astype(np.float64)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        for k, net in enumerate(self.nets_):
            save_file(net.state_dict(), str(folder / f"mlp_{k}.safetensors"))
        meta = {"kind": self.kind, "n_in": self.n_in_, "n_out": self.n_out_, "n_nets": len(self.nets_)}
        (folder / "head.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path, params: ModelParams) -> MLPHead:
        from safetensors.torch import load_file

        meta = json.loads((folder / "head.json").read_text())
        head = cls(params)
        head.n_in_, head.n_out_ = meta["n_in"], meta["n_out"]
        head.nets_ = []
        for k in range(meta["n_nets"]):
            net = _mlp(head.n_in_, params.hidden, params.dropout, head.n_out_)
            net.load_state_dict(load_file(str(folder / f"mlp_{k}.safetensors")))
            head.nets_.append(net.eval())
        return head


class BlendHead:
    """The MLP and the ridge fitted on the same inputs; predictions are
    ``(1 - ridge_weight) * mlp + ridge_weight * ridge`` (both on the 0..1 target scale)."""

    kind = "mlp+ridge"

    def __init__(self, params: ModelParams) -> None:
        self.p = params

    def fit(
        self,
        x,
        y,
        x_valid,
        y_valid,
        log: FitLog,
        group: int = 0,
        stop_rows: list[np.ndarray] | None = None,
        scorer: UnitScorer | None = None,
    ) -> BlendHead:
        self.mlp_ = MLPHead(self.p).fit(x, y, x_valid, y_valid, log, group, stop_rows, scorer)
        ridge_log = FitLog()  # the ridge's one entry would read as an MLP epoch: keep it apart
        ridge = RidgeHead(self.p.ridge_alpha, self.p.ridge_alphas)
        self.ridge_ = ridge.fit(x, y, x_valid, y_valid, ridge_log, group, scorer=scorer)
        log.info.setdefault("ridge_fits", []).extend(ridge_log.epochs)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        w = self.p.ridge_weight
        return (1 - w) * self.mlp_.predict(x) + w * self.ridge_.predict(x)

    def save(self, folder: Path) -> None:
        for name, head in (("mlp", self.mlp_), ("ridge", self.ridge_)):
            (folder / name).mkdir(exist_ok=True)
            head.save(folder / name)
        (folder / "head.json").write_text(json.dumps({"kind": self.kind}))

    @classmethod
    def load(cls, folder: Path, params: ModelParams) -> BlendHead:
        head = cls(params)
        head.mlp_, head.ridge_ = MLPHead.load(folder / "mlp", params), RidgeHead.load(folder / "ridge")
        return head


Head = RidgeHead | MLPHead | BlendHead | KernelRidgeHead


def make_head(params: ModelParams) -> Head:
    """A fresh head of the kind ``params.head`` names."""
    if params.head == "krr":
        return KernelRidgeHead(params.krr_gammas, params.krr_alphas)
    if params.head == "ridge":
        return RidgeHead(params.ridge_alpha, params.ridge_alphas)
    if params.head == "mlp":
        return MLPHead(params)
    return BlendHead(params)


def load_head(folder: Path, params: ModelParams) -> Head:
    """Load whichever head ``head.json`` in ``folder`` names."""
    kind = json.loads((folder / "head.json").read_text())["kind"]
    if kind == "mlp+ridge":
        return BlendHead.load(folder, params)
    if kind == "ridge":
        return RidgeHead.load(folder)
    if kind == "mlp":
        return MLPHead.load(folder, params)
    if kind == "krr":
        return KernelRidgeHead.load(folder)
    raise RunFormatError(f"{folder}/head.json: unknown head {kind!r}; known: ridge, mlp, mlp+ridge, krr")
