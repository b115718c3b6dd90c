"""Micro-batching: concurrent requests share a model pass, each gets exactly its own numbers."""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from questlab.predict import EnsemblePredictor, FoldAverage, Predictor
from questlab.predictors import task_of
from questlab.serve.limits import DEFAULT_BATCH_WINDOW_MS, DEFAULT_MAX_BATCH_PAIRS, ROW_EXACT_MODELS
from questlab.serve.validation import Pair, validate_requests


def _rows_independent(predictor: Predictor) -> bool:
    if isinstance(predictor, FoldAverage):
        return all(getattr(m, "name", None) in ROW_EXACT_MODELS for m in predictor.models)
    return False


def predict_parts(predictor: Predictor, frames: Sequence[pd.DataFrame]) -> list[np.ndarray]:
    """``[predictor.predict(f) for f in frames]``, to the bit, with as few model passes as allowed.

    Fold averages of row-exact models predict all frames concatenated, then split. An ensemble
    lets its members do so, but combines (and post-processes) each frame on its own: the
    post-processing has one batch-level rule (a column it would make constant is left unmapped
    for that batch), so the batch must be the request, not whatever arrived with it. Anything
    else is predicted frame by frame.
    """
    if len(frames) == 1:
        return [predictor.predict(frames[0])]
    if isinstance(predictor, EnsemblePredictor):
        per_member = [predict_parts(m, frames) for m in predictor.members]
        return [predictor.combiner.apply(np.stack([m[j] for m in per_member]))[0] for j in range(len(frames))]
    if _rows_independent(predictor):
        whole = predictor.predict(pd.concat(frames, ignore_index=True))
        return np.split(whole, np.cumsum([len(f) for f in frames])[:-1])
    return [predictor.predict(f) for f in frames]


def serve_batch(predictor: Predictor, requests: Sequence[Sequence[Pair]]) -> list[np.ndarray | Exception]:
    """Validate and predict several requests together; per request its predictions or its error.

    A request the CSV rules refuse gets its ``DataError``; one the models refuse (a ``ValueError``
    from ``predict``) gets that, without failing the others (they are then predicted one by one).
    """
    checked = validate_requests(requests, task_of(predictor))
    out: list[np.ndarray | Exception] = list(checked)  # DataErrors stay; frames are replaced below
    ok = [k for k, c in enumerate(checked) if isinstance(c, pd.DataFrame)]
    frames = [checked[k] for k in ok]
    try:
        preds: list[np.ndarray | Exception] = list(predict_parts(predictor, frames)) if frames else []
    except ValueError as exc:
        if len(frames) == 1:
            preds = [exc]
        else:
            preds = []
            for frame in frames:
                try:
                    preds.append(predictor.predict(frame))
                except ValueError as one:
                    preds.append(one)
    for k, pred in zip(ok, preds, strict=True):
        out[k] = pred
    return out


@dataclass
class _Job:
    item: Any
    size: int  # pairs
    future: asyncio.Future
    since: float  # loop time the request joined the queue


@dataclass
class _Lane:
    """The queue and drain task of one event loop (a server has one; TestClient may run several)."""

    queue: deque[_Job] = field(default_factory=deque)
    task: asyncio.Task | None = None
    last_end: float = float("-inf")  # loop time the previous batch's results were handed out


@dataclass
class MicroBatcher:
    """Collect concurrent requests and process them together in one worker thread.

    Under concurrency (more than one request queued, or one that arrived while the previous
    batch ran), a batch starts ``window_s`` after its oldest request arrived or after the
    previous batch's results were handed out, whichever is later; a lone request reaching an
    idle server starts at once. A batch holds up to ``max_pairs`` pairs (a bigger request goes
    alone). The pause after a batch is what lets the clients just answered send their next
    request in time to join the next batch: without it, 16 clients settle into two cohorts of 8
    that alternate, each paying the models' fixed cost per call (TF-IDF, 2 busy cores: ~90 req/s
    without the pause, ~150-165 with 5 ms). One batch runs at a time (per event loop): the
    models are used by one thread only. ``process(items)`` returns one result per item, an
    exception standing for its error.
    """

    process: Callable[[list[Any]], list[Any]]
    window_s: float = DEFAULT_BATCH_WINDOW_MS / 1000
    max_pairs: int = DEFAULT_MAX_BATCH_PAIRS
    batches: int = 0  # batches run so far (for tests and curiosity)
    _lanes: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)

    async def submit(self, item: Any, size: int) -> Any:
        """This item's result, processed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.setdefault(loop, _Lane())
        job = _Job(item, size, loop.create_future(), loop.time())
        lane.queue.append(job)
        if lane.task is None or lane.task.done():  # the drain task ends whenever the queue is empty
            lane.task = loop.create_task(self._drain(lane))
        return await job.future

    async def _drain(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        queue = lane.queue
        while queue:
            # A lone request reaching an idle server goes at once: nobody is coming to share with.
            concurrent = len(queue) > 1 or queue[0].since < lane.last_end
            wait = max(queue[0].since, lane.last_end) + self.window_s - loop.time()
            if concurrent and wait > 0 and sum(j.size for j in queue) < self.max_pairs:
                await asyncio.sleep(wait)
            batch = [queue.popleft()]
            n = batch[0].size
            while queue and n + queue[0].size <= self.max_pairs:
                n += queue[0].size
                batch.append(queue.popleft())
            live = [j for j in batch if not j.future.done()]  # a cancelled request needs nothing
            if not live:
                continue
            try:
                results = list(await asyncio.to_thread(self.process, [j.item for j in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"batch of {len(live)} requests gave {len(results)} results")
            except Exception as exc:  # a bug: every request of the batch gets it (a 500), none hangs
                results = [exc] * len(live)
            self.batches += 1
            for job, result in zip(live, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
            lane.last_end = loop.time()


# --- the app ------------------------------------------------------------------------------------
