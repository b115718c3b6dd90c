"""One battery for every registered model: fit, predict shape and range, save -> load identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from questlab.data import load_train
from questlab.models import FitLog, Model, NotFittedError, build_model, model_names, registry

# The package's own families, whatever test doubles helper modules have registered by the time
# this module is collected (which depends on collection order): the list must not change with it.
PACKAGE_MODELS = [name for name in model_names() if registry._REGISTRY[name].startswith("questlab.")]

# Small, fast params per family (defaults where empty).
TINY_PARAMS: dict[str, dict] = {
    "tfidf": {"max_features": 2000},
    "transformer": {"max_length": 32, "epochs": 1, "batch_size": 32, "progress": False},
}


def test_the_battery_covers_every_family_the_package_ships() -> None:
    assert {"mean", "tfidf", "embedding", "transformer"} <= set(PACKAGE_MODELS)
    assert not any(registry._REGISTRY[n].startswith("helpers.") for n in PACKAGE_MODELS)


@pytest.mark.parametrize("name", PACKAGE_MODELS)
def test_model_contract(name: str, train_slice_csv: Path, tmp_path: Path) -> None:
    frame = load_train(train_slice_csv)
    train, valid = frame.iloc[:180].reset_index(drop=True), frame.iloc[180:].reset_index(drop=True)
    model = build_model(name, TINY_PARAMS.get(name, {}))
    with pytest.raises(NotFittedError):
        model.predict(valid)
    assert model.fit(train, valid, FitLog(workdir=tmp_path / "work")) is model
    pred = model.predict(valid)
    assert pred.shape == (len(valid), 30) and np.isfinite(pred).all()
    assert pred.min() >= 0 and pred.max() <= 1
    model.save(tmp_path / "saved")
    loaded = Model.load(tmp_path / "saved")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded.predict(valid), pred, rtol=1e-6, atol=1e-7)
