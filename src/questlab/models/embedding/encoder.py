"""Frozen sentence encoder: texts -> pooled, (optionally) normalised vectors, fast on a CPU.

What makes it faster than ``SentenceTransformer.encode`` on the same model:

- tokenise once, all texts, without truncation (we need the true length for head + tail);
- batch only windows of the same token length: no padding at all, and a text's vector does
  not depend on what else is embedded with it (see ``same_length_batches``);
- bf16 autocast on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 pooling after it;
- ``torch.inference_mode`` and no per-batch Python-side conversions.

Pooling and normalisation are the encoder's own, read from its sentence-transformers files
(``modules.json``, ``1_Pooling/config.json``); a plain HF folder falls back to mean pooling.

Long texts: ``head_tail`` (default) keeps the first ``head_share`` of the token budget and the
end of the text for the rest; ``chunks`` cuts the text into budget-sized windows and averages
their vectors weighted by token count. See docs/embedding.md for why head + tail is the default.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from questlab.errors import ConfigError
from questlab.models.pretrained import encoder_fingerprint, resolve_encoder

LongText = Literal["head_tail", "chunks"]
Layers = Literal["last", "mean"]
_POOLING_KEYS = {  # sentence-transformers' 1_Pooling/config.json flags
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
POOLING_MODES = tuple(_POOLING_KEYS)
MIN_ROWS = 64  # token rows (batch x window length) of the smallest forward pass; see encode


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that changes a vector: part of every cache key."""

    max_tokens: int = 256  # token budget per window, special tokens included
    long_text: LongText = "head_tail"
    head_share: float = 0.5  # head_tail: share of the budget given to the start of the text
    bf16: bool = True  # autocast in bf16 (vectors match fp32 to cosine ~1.0000, see MODELS.md)
    layers: Layers = "last"  # pool the last hidden layer, or the mean of every layer's pooled tokens
    depth: int | None = None  # run only the first ``depth`` transformer layers (None: all of them)

    def key(self) -> str:
        key = f"t{self.max_tokens}-{self.long_text}-h{self.head_share:g}-{'bf16' if self.bf16 else 'fp32'}"
        key = key if self.layers == "last" else f"{key}-layers-{self.layers}"
        return key if self.depth is None else f"{key}-depth{self.depth}"


@dataclass(frozen=True)
class EncodedTexts:
    """Vectors plus, per text, its token count and how many tokens the windows kept."""

    vectors: np.ndarray  # (n, dim) float32
    n_tokens: np.ndarray  # (n,) int, without special tokens
    kept: np.ndarray  # (n,) int


def read_pooling(folder: Path) -> tuple[str, bool, int | None]:
    """The encoder's pooling mode, whether it L2-normalises, and its sentence max_seq_length."""
    mode, normalize, max_len = "mean", False, None
    modules = folder / "modules.json"
    if modules.exists():
        entries = json.loads(modules.read_text())
        normalize = any(e.get("type", "").endswith("Normalize") for e in entries)
        for e in entries:
            if e.get("type", "").endswith("Pooling"):
                cfg = json.loads((folder / e["path"] / "config.json").read_text())
                on = [mode for mode, key in _POOLING_KEYS.items() if cfg.get(key, False)]
                if len(on) != 1:
                    raise ConfigError(
                        f"{folder}: pooling {on or 'none'} not supported; expected one of {POOLING_MODES}"
                    )
                mode = on[0]
    sbert = folder / "sentence_bert_config.json"
    if sbert.exists():
        max_len = json.loads(sbert.read_text()).get("max_seq_length")
    return mode, normalize, max_len


class SentenceEncoder:
    """A frozen HF encoder with the pooling it was trained with; ``encode`` is the one entry point."""

    def __init__(
        self, spec: str, settings: EncoderSettings | None = None, batch_size: int = 32, threads: int = 0
    ) -> None:
        from questlab.console import silence_third_party

        silence_third_party()  # before transformers loads: no load report, no hub notices
        import torch
        from transformers import AutoConfig, AutoTokenizer

        self.folder = resolve_encoder(spec)
        self.settings = settings or EncoderSettings()
        self.batch_size = batch_size
        self.threads = threads  # 0: pick from the load average at each encode (see pick_threads)
        self.pooling, self.normalize, self.trained_max_len = read_pooling(self.folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        config = AutoConfig.from_pretrained(self.folder)
        # MPNet/RoBERTa declare 514 positions (offset by padding_idx + 1) but take 512 tokens.
        limit = min(int(getattr(config, "max_position_embeddings", 512)), 512)
        if self.settings.max_tokens > limit:
            raise ConfigError(
                f"max_tokens={self.settings.max_tokens} exceeds what {self.folder.name} supports ({limit})"
            )
        self._prefix, self._suffix = _special_tokens(self.tokenizer)
        self.n_special = len(self._prefix) + len(self._suffix)
        self.dim = int(config.hidden_size)
        n_layers = int(getattr(config, "num_hidden_layers", 0))
        if self.settings.depth is not None and not 1 <= self.settings.depth <= n_layers:
            depth = self.settings.depth
            raise ConfigError(f"depth={depth}: {self.folder.name} has {n_layers} layers; give 1..{n_layers}")
        self._bf16 = self.settings.bf16 and _cpu_has_bf16()
        self._torch = torch
        self._model = None  # loaded on the first encode: a warm cache never needs the weights
        self._n_tokens: dict[str, int] = {}  # token_counts' memory

    @property
    def model(self):
        """The HF model, loaded once, in eval mode."""
        if self._model is None:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.folder).eval()
            if self.settings.depth is not None:
                _truncate(model, self.settings.depth)
            self._model = model
        return self._model

    def token_counts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per text, its token count (no special tokens) and how many of them the windows keep."""
        # Remembered per text: every fold of a run logs the truncation of mostly the same texts.
        new = list(dict.fromkeys(t for t in texts if t not in self._n_tokens))
        if new:
            ids = self.tokenizer(new, add_special_tokens=False, verbose=False)["input_ids"]
            self._n_tokens.update(zip(new, map(len, ids), strict=True))
        n = np.array([self._n_tokens[t] for t in texts], dtype=int)
        if self.settings.long_text == "chunks":
            return n, n
        return n, np.minimum(n, self.settings.max_tokens - self.n_special)

    @property
    def cache_namespace(self) -> str:
        """Encoder fingerprint + settings: vectors under one namespace are interchangeable."""
        norm = "-norm" if self.normalize else ""
        # "-samelen": vectors of same-length batches (questlab <= 0.9.0 padded batches: other last bits)
        return f"{encoder_fingerprint(self.folder)}-{self.settings.key()}-{self.pooling}{norm}-samelen"

    # --- windows ------------------------------------------------------------------------
    def _windows(self, ids: list[int]) -> list[list[int]]:
        """Cut one text's token ids into the windows to embed (special tokens not yet added)."""
        budget = self.settings.max_tokens - self.n_special
        if len(ids) <= budget:
            return [ids]
        if self.settings.long_text == "chunks":
            n = -(-len(ids) // budget)
            size = -(-len(ids) // n)  # equal-sized chunks: no 3-token tail chunk with a full vote
            return [ids[i : i + size] for i in range(0, len(ids), size)]
        head = round(budget * self.settings.head_share)
        tail = budget - head
        return [ids[:head] + (ids[-tail:] if tail else [])]

    def encode(self, texts: list[str], progress: bool = True, desc: str = "embedding") -> EncodedTexts:
        """Embed ``texts``; returns float32 vectors in input order plus token statistics."""
        torch = self._torch
        if not texts:
            return EncodedTexts(np.zeros((0, self.dim), np.float32), np.zeros(0, int), np.zeros(0, int))
        all_ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, ids in enumerate(all_ids):
            for w in self._windows(ids):
                windows.append(self._prefix + w + self._suffix)
                owner.append(i)
        n_tokens = np.array([len(x) for x in all_ids])
        kept = np.zeros(len(texts), dtype=int)
        np.add.at(kept, owner, [len(w) - self.n_special for w in windows])

        pooled = np.zeros((len(windows), self.dim), dtype=np.float32)
        bar = _progress(len(windows), desc, progress)
        with (
            torch_threads(pick_threads(self.threads)),
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16),
        ):
            for idx in same_length_batches([len(w) for w in windows], self.batch_size):
                input_ids = torch.tensor([windows[j] for j in idx], dtype=torch.long)
                # MKL's fp32 GEMM sums a matrix of few rows (batch x tokens: under about 4 per
                # thread) in another order than a taller one: repeat a small batch's rows (the
                # cost of one short forward) so a short window alone gets its in-batch vector.
                input_ids = input_ids.repeat(-(-MIN_ROWS // input_ids.numel()), 1)
                mask = torch.ones_like(input_ids)
                pooled[idx] = self._forward_pooled(input_ids, mask)[: len(idx)].numpy()
                bar.update(len(idx))
        bar.close()

        if len(windows) == len(texts):
            vectors = pooled
        else:  # chunks: token-weighted mean of each text's windows; a text of one window keeps its own
            weights = np.array([len(w) - self.n_special for w in windows], dtype=np.float32)
            vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
            np.add.at(vectors, owner, pooled * weights[:, None])
            vectors /= np.maximum(np.bincount(owner, weights, minlength=len(texts)), 1)[:, None].astype(np.float32)
            single = np.bincount(owner, minlength=len(texts)) == 1
            vectors[single] = pooled[np.isin(owner, np.flatnonzero(single))]
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return EncodedTexts(vectors.astype(np.float32), n_tokens, kept)

    def _forward_pooled(self, input_ids, mask):  # -> (b, d) float32
        if self.settings.layers == "last":
            return self._pool(self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float(), mask)
        states = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
        # every transformer layer's pooled tokens, averaged (states[0] is the input embeddings)
        return sum(self._pool(h.float(), mask) for h in states[1:]) / (len(states) - 1)

    def _pool(self, hidden, mask):  # (b, t, d) float32, (b, t) -> (b, d)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
        summed, count = (hidden * m).sum(1), m.sum(1).clamp(min=1)
        return summed / (count.sqrt() if self.pooling == "mean_sqrt_len" else count)


def _truncate(model, depth: int) -> None:
    """Keep the first ``depth`` transformer layers of ``model`` (its layer list: the ModuleList as
    long as ``num_hidden_layers``; BERT, MPNet, RoBERTa and DistilBERT name it differently)."""
    import torch

    n = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(stacks) != 1:
        raise ConfigError(f"depth: cannot find the layer list of {type(model).__name__}; leave depth unset")
    del stacks[0][depth:]
    model.config.num_hidden_layers = depth


def same_length_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices of windows to embed together: only windows of one token length share a batch.

    So no window is padded, and a window's vector is the one it gets alone, whatever else is
    embedded with it. Padding to a batch's longest window changed the float arithmetic of the
    shorter ones (the attention and pooling sums run over more, masked, positions): under bf16,
    MiniLM vectors moved by up to 1e-3, and a bundle embedding the test texts with an empty cache
    predicted up to 0.005 away from its run. Longest first: the peak-memory batch comes at once,
    and the ETA is pessimistic, not rosy.
    """
    if not lengths:
        return []
    order = np.argsort(-np.asarray(lengths), kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(np.asarray(lengths)[order])) + 1)
    return [g[i : i + batch_size] for g in groups for i in range(0, len(g), batch_size)]


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (parallel fold workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# (wall, CPU) samples of this process: its own share of the load average (see own_load).
_CPU_SAMPLES: list[tuple[float, float]] = [(time.monotonic(), _cpu_seconds())]


def own_load(window: float = 60.0) -> float:
    """Cores this process kept busy over about the last ``window`` seconds (all its threads).

    The load average counts this process's own threads too: without taking them out, a run that
    embeds with 2 threads sees load 2 at its next ``encode`` and falls back to 1 thread for the
    rest of the run (MPNet: 3.0 instead of 5.5 seq/s on the same texts). The fold workers of a
    member fitted with ``parallel_folds`` are this run's too: their CPU counts once they end.
    """
    now = (time.monotonic(), _cpu_seconds())
    recent = [s for s in _CPU_SAMPLES if now[0] - s[0] <= window]
    past = recent[0] if recent else _CPU_SAMPLES[-1]
    _CPU_SAMPLES[:] = [*recent[-50:], now]  # keep the window's samples (bounded) and this one
    elapsed = now[0] - past[0]
    return (now[1] - past[1]) / elapsed if elapsed >= 1.0 else 0.0


def pick_threads(requested: int = 0, load: float | None = None, own: float | None = None) -> int:
    """Torch threads to use: ``requested`` if > 0, else the cores other processes' load leaves free.

    On a shared 2-core machine, 2 OpenMP threads competing with other jobs spin at each barrier:
    under a load of 8 they embed 2x slower and run MLP steps 13x slower than 1 thread.
    ``load`` (the 1-minute load average) and ``own`` (this process's part of it, ``own_load``)
    are read from the system unless given. ``OMP_NUM_THREADS``, when set, caps the count.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        # set by whoever split the cores (parallel fold workers get cores // workers): stay inside it
        cores = min(cores, int(os.environ["OMP_NUM_THREADS"]))
    load = os.getloadavg()[0] if load is None else load
    own = own_load() if own is None else own
    free = cores - max(0.0, load - own)
    return max(1, min(cores, round(free)))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] / [SEP] for BERT, <s> / </s> ...)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise ValueError("cannot locate the text between the tokenizer's special tokens")


def _cpu_has_bf16() -> bool:
    """bf16 autocast helps only with native bf16 instructions; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class _progress:
    """When asked: a tqdm bar with rate and ETA on a terminal, one plain line at the end elsewhere.

    The switch is :func:`questlab.console.progress_enabled` (stderr a terminal): a log or a pipe
    gets ``embed train: 6079 sequences in 41.2 s``, never ``\r`` redraws or escape codes.
    """

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from questlab.console import progress_enabled, quiet_mode

        self.bar = None
        self.line = enabled and not progress_enabled() and not quiet_mode() and total > 0
        self.total, self.desc, self.started = total, desc, time.perf_counter()
        if enabled and progress_enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="seq", mininterval=2.0, smoothing=0.1)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.line:
            from questlab.console import stderr

            stderr(f"{self.desc}: {self.total} sequences in {time.perf_counter() - self.started:.1f} s")
