"""progress.json in a transformer checkpoint is strict JSON and reads back to the same progress."""

from __future__ import annotations

import json
import math

import pytest
import torch

from questlab.models.transformer.checkpoints import Progress, Snapshot, load_checkpoint, save_checkpoint


def _refuse(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def test_progress_without_a_best_score_is_strict_json_and_reads_back(tmp_path):
    net = torch.nn.Linear(2, 1)
    progress = Progress(epoch=1, history=[{"epoch": 1.0, "valid_score": math.nan}], best_score=-math.inf)
    path = save_checkpoint(
        tmp_path, Snapshot(progress=progress, best={k: v.clone() for k, v in net.state_dict().items()})
    )
    text = (path / "progress.json").read_text()
    json.loads(text, parse_constant=_refuse)  # jq / JavaScript would refuse a bare -Infinity or NaN
    back, best = load_checkpoint(path, net, optimizer=None, scheduler=None)
    assert back.best_score == -math.inf and back.epoch == 1 and back.best_epoch == -1
    assert math.isnan(back.history[0]["valid_score"]) and back.history[0]["epoch"] == 1.0
    assert set(best) == set(net.state_dict())


def test_progress_written_by_earlier_versions_still_reads(tmp_path):
    net = torch.nn.Linear(2, 1)
    path = save_checkpoint(tmp_path, Snapshot(progress=Progress(epoch=2), best=dict(net.state_dict())))
    (path / "progress.json").write_text('{"epoch": 2, "history": [], "best_score": -Infinity, "best_epoch": -1}')
    back, _ = load_checkpoint(path, net, optimizer=None, scheduler=None)
    assert back.best_score == -math.inf and back.epoch == 2


@pytest.mark.parametrize("score", [0.25, -math.inf])
def test_a_best_score_survives_the_round_trip(tmp_path, score):
    net = torch.nn.Linear(2, 1)
    path = save_checkpoint(
        tmp_path, Snapshot(progress=Progress(epoch=3, best_score=score, best_epoch=2), best=dict(net.state_dict()))
    )
    back, _ = load_checkpoint(path, net, optimizer=None, scheduler=None)
    assert back.best_score == score and back.best_epoch == 2
