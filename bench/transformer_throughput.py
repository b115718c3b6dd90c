"""Training throughput of questlab's transformer loop against a plain Hugging Face loop, same rows, one run.

Plain HF baseline: ``AutoModel`` + mean pooling + a linear head, ``torch.optim.AdamW``, every
batch padded to ``--max-length`` tokens, rows in random order, fp32 (``--baseline-bf16``: bf16
autocast), the loss read every step. questlab: ``train_network`` with its defaults (length-
bucketed batches, dynamic padding rounded to ``--pad-to-multiple``, bf16 autocast, no per-step
host sync, fused AdamW and the largest micro-batch that fits on CUDA, glibc malloc tuning on
CPU). Same encoder weights, same batch size (effective), one pass each, each pass in its own
fresh process after one untimed warm-up batch. Prints sequences/s, peak GPU memory and GPU
utilisation (sampled with pynvml where installed; n/a on CPU) and each process's peak RSS.

    PYTHONPATH=src python bench/transformer_throughput.py --train ../shared/quest/train.csv --rows 64
    PYTHONPATH=src python bench/transformer_throughput.py --device cuda --encoder all-mpnet-base-v2 \
        --rows 1024 --batch-size 16 --max-length 512 --pad-to-multiple 64
    # the same architecture without carrying its weights (a folder with config.json + tokenizer):
    PYTHONPATH=src python bench/transformer_throughput.py --device cuda --encoder .gpu/mpnet-arch --random-init ...
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class GpuSampler:
    """Samples GPU utilisation every 0.2 s in a thread (pynvml); ``mean`` is None without it."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.handle = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
                self.read = lambda: pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            except Exception:  # pynvml missing or no NVML: utilisation not reported
                self.handle = None
        self.stop = threading.Event()

    def __enter__(self) -> GpuSampler:
        if self.handle is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.samples.append(self.read())

    def __exit__(self, *exc) -> None:
        self.stop.set()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


class HFBaseline(torch.nn.Module):
    """What a plain Hugging Face fine-tuning script builds: encoder, mean pooling, a linear head."""

    def __init__(self, folder, n_out: int, pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if pretrained:
            self.encoder = AutoModel.from_pretrained(folder).float()
        else:
            self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(folder)).float()
        self.uses_token_types = getattr(self.encoder.config, "type_vocab_size", 0) > 1  # MPNet has none
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, n_out)

    def forward(self, input_ids, attention_mask, token_type_ids):
        types = {"token_type_ids": token_type_ids} if self.uses_token_types else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **types)
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        return self.head((out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0))


def baseline_epoch(net, data, args, device: torch.device) -> None:
    """One pass in random order, every batch padded to ``max_length``, the loss read each step."""
    from questlab.models.transformer.batches import collate

    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-5)
    order = np.random.default_rng(0).permutation(len(data))
    net.train()
    for start in range(0, len(order), args.batch_size):
        batch = collate([data[i] for i in order[start : start + args.batch_size]], data.pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        for key in ("input_ids", "attention_mask", "token_type_ids"):  # pad to the full length
            fill = data.pad_id if key == "input_ids" else 0
            batch[key] = F.pad(batch[key], (0, args.max_length - batch[key].shape[1]), value=fill)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.baseline_bf16):
            logits = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["targets"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # what a plain loop does to log its loss: a host sync per step


def measure(kind: str, args: argparse.Namespace) -> dict:
    """In a fresh process: one untimed warm-up batch, then one timed pass of ``kind`` ("questlab" or
    "baseline"); returns wall and CPU seconds, peak RSS, peak GPU memory and mean GPU utilisation."""
    torch.set_num_threads(args.threads)
    import transformers
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from questlab.data import load_train
    from questlab.models.base import FitLog
    from questlab.models.pretrained import resolve_encoder
    from questlab.models.transformer.batches import RowDataset
    from questlab.models.transformer.inputs import encode_frame
    from questlab.models.transformer.network import QuestNet, load_encoder
    from questlab.models.transformer.training import TrainSettings, train_network
    from questlab.schema import TARGETS

    transformers.logging.set_verbosity_error()  # no weight-loading report per child
    device = torch.device(args.device)
    folder = resolve_encoder(args.encoder)
    frame = load_train(args.train).sample(args.rows, random_state=0).reset_index(drop=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = encode_frame(tokenizer, frame, args.max_length, with_answer=True)
    targets = frame[list(TARGETS)].to_numpy(np.float32)
    pad, b, zeros = tokenizer.pad_token_id or 0, args.batch_size, [0] * len(frame)
    data = RowDataset(enc.input_ids, enc.token_type_ids, zeros, zeros, targets, pad_id=pad)
    warm = RowDataset(enc.input_ids[:b], enc.token_type_ids[:b], zeros[:b], zeros[:b], targets[:b], pad_id=pad)
    torch.manual_seed(0)
    if kind == "questlab":
        settings = TrainSettings.of(
            bf16=True, epochs=1, batch_size=b, progress=False, malloc_tuning=not args.no_malloc_tuning,
            max_length=args.max_length, pad_to_multiple=args.pad_to_multiple, compile=args.compile,
        )  # fmt: skip
        accelerator = Accelerator(cpu=device.type == "cpu")
        pretrained = not args.random_init
        sdpa = not args.no_mpnet_sdpa
        nets = [QuestNet(load_encoder(folder, pretrained, sdpa), n_out=len(TARGETS)) for _ in "ab"]  # warm-up, timed
        run = lambda rows: train_network(nets.pop(0), rows, None, settings, FitLog(), accelerator)  # noqa: E731
    else:
        net = HFBaseline(folder, len(TARGETS), pretrained=not args.random_init).to(device)
        run = lambda rows: baseline_epoch(net, rows, args, device)  # noqa: E731
    run(warm)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), time.process_time()
    with GpuSampler(device) as sampler:
        run(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
    out = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rss": peak_rss_gib()}
    out["gpu_mem"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    out["gpu_util"] = sampler.mean
    out["tokens"] = float(enc.lengths().mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--train", default="../shared/quest/train.csv")
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (questlab, baseline); the best counts")
    parser.add_argument("--pad-to-multiple", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="questlab's loop with torch.compile")
    parser.add_argument("--baseline-bf16", action="store_true", help="the baseline under bf16 autocast too")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="ablation: questlab's loop without it")
    parser.add_argument("--no-mpnet-sdpa", action="store_true", help="ablation: MPNet on transformers' own attention")
    parser.add_argument("--only", choices=["questlab", "baseline"], help="measure one loop only")
    parser.add_argument(
        "--random-init", action="store_true",
        help="build the encoder from the folder's config.json, without its weights (a folder of config + "
        "tokenizer only; speed does not depend on the weights' values)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")

    # Each measurement runs in its own fresh process (malloc settings, compiled graphs and the
    # CUDA caching allocator would carry over), alternating the loops; each loop's best round
    # counts, since on a shared machine the load drifts.
    ctx = mp.get_context("spawn")
    kinds = [args.only] if args.only else ["questlab", "baseline"]
    rounds: dict[str, list[dict]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                rounds[kind].append(pool.submit(measure, kind, args).result())
    first = rounds[kinds[0]][0]
    print(
        f"{args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}), {args.encoder}"
        f"{' (random init)' if args.random_init else ''}, {args.rows} rows, mean {first['tokens']:.0f} tokens "
        f"(max {args.max_length}), batch {args.batch_size}"
    )
    n, best = args.rows, {}
    for kind, rs in rounds.items():
        r = min(rs, key=lambda x: x["wall"])
        best[kind] = r
        mem = f"{r['gpu_mem']:.1f} GiB" if r["gpu_mem"] is not None else "n/a"
        util = f"{r['gpu_util']:.0f}%" if r["gpu_util"] is not None else "n/a"
        name = "questlab" if kind == "questlab" else "HF baseline" + (" (bf16)" if args.baseline_bf16 else " (fp32)")
        walls = [round(x["wall"], 1) for x in rs]
        print(
            f"{name:<20} {n / r['wall']:7.2f} seq/s wall, {n / r['cpu']:7.2f} seq/CPU-s, peak GPU mem {mem}, "
            f"GPU util {util}, peak RSS {r['rss']:.2f} GiB, rounds (wall s) {walls}"
        )
    if len(best) == 2:
        print(f"speed-up over the baseline: {best['baseline']['wall'] / best['questlab']['wall']:.2f}x wall")


if __name__ == "__main__":
    main()
