"""Epoch checkpoints: one folder per epoch, complete once its marker exists, written off the critical path.

At an epoch's end the loop takes a snapshot (every tensor copied to the CPU, the RNG states
read), which is quick, and hands it to a ``CheckpointWriter`` whose thread serialises it while
the next epoch trains. A kill mid-write leaves a folder without its ``complete`` marker, which
is ignored. The last epoch of a stage stores only what a finished stage needs (its best
weights and history): resuming a finished stage trains nothing, so its weights-so-far,
optimizer and RNG states would never be read.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from questlab.strictjson import number, strict_json


@dataclass
class Progress:
    """What a checkpoint carries besides weights: where the run stands and what it has seen."""

    epoch: int = 0  # epochs finished
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = -1


@dataclass
class Snapshot:
    """Everything a checkpoint holds, already on the CPU: safe to write from another thread."""

    progress: Progress
    best: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor] | None = None  # None: a finished stage (no resume needed)
    state: dict[str, Any] | None = None  # optimizer, scheduler, RNG states


def state_dict_cpu(net: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``net``'s weights on the CPU (a copy even there: training goes on in place)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def to_cpu(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor copied to the CPU (optimizer state dicts)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def rng_states() -> dict[str, Any]:
    """Every random generator the loop draws from (torch, CUDA, numpy, Python)."""
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def take_snapshot(
    net: nn.Module, best: dict[str, torch.Tensor], optimizer, scheduler, progress: Progress, finished: bool
) -> Snapshot:
    """Copy what ``save_checkpoint`` writes; a ``finished`` stage keeps only best weights + history."""
    progress = Progress(**json.loads(json.dumps(progress.__dict__)))  # frozen: the loop goes on
    if finished:
        return Snapshot(progress, best)
    state = {"optimizer": to_cpu(optimizer.state_dict()), "scheduler": scheduler.state_dict(), "rng": rng_states()}
    return Snapshot(progress, best, state_dict_cpu(net), state)


def latest_checkpoint(folder: Path | None) -> Path | None:
    """The newest complete ``epoch-K`` checkpoint in ``folder``, or None."""
    if folder is None or not folder.exists():
        return None
    done = [p for p in folder.glob("epoch-*") if (p / "complete").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(folder: Path, snap: Snapshot) -> Path:
    """Write ``epoch-K`` (best weights, progress; and unless finished weights, optimizer, schedule,
    RNG), then drop older ones."""
    path = folder / f"epoch-{snap.progress.epoch}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    save_file(snap.best, str(path / "best.safetensors"))
    if snap.weights is not None:
        save_file(snap.weights, str(path / "weights.safetensors"))
        torch.save(snap.state, path / "state.pt")
    (path / "progress.json").write_text(strict_json(snap.progress.__dict__))  # no bare -Infinity
    (path / "complete").touch()  # last: a kill before this line leaves an incomplete, ignored folder
    for old in folder.glob("epoch-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _read_progress(file: Path) -> Progress:
    """``progress.json`` as written (strict JSON: ``null`` where a number is undefined: no best
    score yet is -inf again, an undefined score in the history NaN); older files' bare
    ``-Infinity`` / ``NaN`` still parse."""
    raw = json.loads(file.read_text())
    best = raw.get("best_score")
    raw["best_score"] = -math.inf if best is None else best
    raw["history"] = [{k: number(v) for k, v in h.items()} for h in raw.get("history", [])]
    return Progress(**raw)


def load_checkpoint(path: Path, net: nn.Module, optimizer, scheduler) -> tuple[Progress, dict[str, torch.Tensor]]:
    """Restore what ``save_checkpoint`` wrote; returns the progress and the best weights so far.

    A finished stage's checkpoint has no weights-so-far nor optimizer state: ``net`` and the
    optimizer are left as they are (the caller loads the best weights and trains no more).
    """
    progress = _read_progress(path / "progress.json")
    best = load_file(str(path / "best.safetensors"))
    if not (path / "weights.safetensors").exists():
        return progress, best
    net.load_state_dict(load_file(str(path / "weights.safetensors")))
    state = torch.load(path / "state.pt", weights_only=False)  # our own file: optimizer + RNG states
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return progress, best


class CheckpointWriter:
    """Writes snapshots in one background thread, one at a time; ``wait`` re-raises its error.

    ``write`` waits for the previous write first, so checkpoints land in order and at most one
    snapshot is held in memory besides the live model.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, fn, *args) -> None:
        """Run ``fn(*args)`` (``save_checkpoint``) in the writer thread (or now, if not background)."""
        self.wait()
        if not self.background:
            fn(*args)
            return

        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # handed to the training thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="questlab-checkpoint", daemon=False)
        self._thread.start()

    def wait(self) -> None:
        """Block until the pending write is on disk; raise what it raised, if anything."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
