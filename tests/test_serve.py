"""HTTP serving returns the same predictions as the batch path, and rejects bad pairs clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.predict import load_predictor, predict_file
from questlab.schema import TARGETS
from questlab.serve import create_app


def test_serve_matches_batch_predict(store, train_slice_csv: Path, test_slice_csv: Path, tmp_path: Path) -> None:
    config = parse_config(
        {
            "name": "s",
            "folds": {"n_splits": 3},
            "bootstrap": 0,
            "model": {"name": "tfidf", "params": {"max_features": 2000}},
        }
    )
    run_id = run_cv(config, train_slice_csv, store=store, say=lambda m: None)
    batch = predict_file(load_predictor(store, run_id), test_slice_csv, tmp_path / "p.csv")
    client = TestClient(create_app(load_predictor(store, run_id)))
    assert client.get("/health").json()["run_id"] == run_id

    pairs = pd.read_csv(test_slice_csv, dtype=str, keep_default_na=False).head(5)
    payload = {"pairs": [{**row, "qa_id": int(row["qa_id"])} for row in pairs.to_dict(orient="records")]}
    response = client.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    got = pd.DataFrame(response.json()["predictions"])
    assert list(got["qa_id"]) == list(batch["qa_id"].head(5))
    np.testing.assert_allclose(got[list(TARGETS)].to_numpy(), batch[list(TARGETS)].head(5).to_numpy(), rtol=1e-9)

    # one pair alone gets the same prediction as inside a batch (no batch-dependent scaling)
    alone = client.post("/predict", json={"pairs": payload["pairs"][2:3]}).json()["predictions"][0]
    assert alone[TARGETS[0]] == got.loc[2, TARGETS[0]]

    bad = client.post("/predict", json={"pairs": [{**payload["pairs"][0], "answer": "   "}]})
    assert bad.status_code == 422 and "answer" in bad.text
    unknown = client.post("/predict", json={"pairs": [{**payload["pairs"][0], "score": 3}]})
    assert unknown.status_code == 422 and "score" in unknown.text
