"""Any local encoder folder trains in fp32, whatever dtype its weights were stored in."""

from __future__ import annotations

from pathlib import Path

import torch

from questlab.models import FitLog
from questlab.models.transformer import TransformerModel
from questlab.models.transformer.network import load_encoder

pytest_plugins = ["helpers.transformer"]


def _half_folder(tiny_encoder: Path, tmp_path: Path) -> Path:
    """The tiny encoder re-saved in fp16, as most published checkpoints are."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "tiny-fp16"
    AutoModel.from_pretrained(tiny_encoder).half().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(folder)
    return folder


def test_an_fp16_folder_loads_as_fp32(tiny_encoder, tmp_path):
    from safetensors import safe_open

    folder = _half_folder(tiny_encoder, tmp_path)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # the folder really holds fp16
        assert {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (safe_open is no dict) == {torch.float16}
    dtypes = {p.dtype for p in load_encoder(folder).parameters()}
    assert dtypes == {torch.float32}


def test_a_training_step_from_an_fp16_folder_runs_in_fp32(tiny_encoder, tmp_path, make_quest):
    folder = _half_folder(tiny_encoder, tmp_path)
    params = {"encoder": str(folder), "max_length": 48, "batch_size": 8, "epochs": 1, "precision": "fp32"}
    model = TransformerModel({**params, "progress": False}).fit(make_quest(16), None, FitLog())
    net = model.networks_["joint"]
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    pred = model.predict(make_quest(8, seed=1))
    assert pred.shape == (8, 30) and torch.isfinite(torch.from_numpy(pred)).all()
