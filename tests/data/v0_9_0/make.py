"""How the recorded 0.9.0 store and bundle beside this file were made (run once, at aab9721).

Synthetic QUEST-format data (no competition rows): 40 questions x 3 answers to train on, 20 pairs
to predict. Three runs (TF-IDF, mean, and their rank-averaged ensemble with distribution
post-processing and a question share), a bundle of the ensemble, and every predictor's test
predictions. ``tests/test_recorded_v0_9_0.py`` loads them with today's questlab and asserts the
same predictions. Rerunning this with a later questlab would record that version, not 0.9.0.

    cd tests/data/v0_9_0 && rm -rf store bundle expected && python make.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.schema import ID, INPUT_COLUMNS, TARGETS

HERE = Path(__file__).resolve().parent
WORDS = [
    "python",
    "list",
    "sort",
    "error",
    "install",
    "server",
    "file",
    "memory",
    "thread",
    "value",
    "function",
    "class",
    "loop",
    "string",
    "database",
    "query",
    "index",
    "table",
    "network",
    "packet",
    "route",
    "cache",
    "kernel",
    "driver",
    "image",
    "pixel",
    "color",
    "font",
    "layout",
    "browser",
    "script",
    "style",
    "event",
    "button",
    "window",
    "theory",
    "proof",
    "number",
    "prime",
    "graph",
    "vertex",
]


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


def frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(50):
        title, body = _text(rng, 6), _text(rng, 30)
        category = ["TECHNOLOGY", "SCIENCE", "CULTURE"][q % 3]
        for a in range(3 if q < 40 else 1):
            rows.append(
                {
                    ID: 1000 + len(rows),
                    "question_title": title,
                    "question_body": body,
                    "question_user_name": f"asker{q}",
                    "question_user_page": f"https://example.com/users/{q}",
                    "answer": _text(rng, 25),
                    "answer_user_name": f"answerer{q}_{a}",
                    "answer_user_page": f"https://example.com/users/a{q}_{a}",
                    "url": f"https://example.com/q/{q}",
                    "category": category,
                    "host": f"site{q % 4}.example.com",
                }
            )
    inputs = pd.DataFrame(rows)[[ID, *INPUT_COLUMNS]]
    train, test = inputs.iloc[:120].reset_index(drop=True), inputs.iloc[120:].reset_index(drop=True)
    ratings = rng.integers(0, 4, size=(len(train), len(TARGETS))) / 3.0
    train = pd.concat([train, pd.DataFrame(ratings, columns=list(TARGETS))], axis=1)
    return train, test


def main() -> None:
    from questlab.ensemble.build import build_ensemble

    import questlab as ql
    from questlab.ensemble.combine import EnsembleSpec
    from questlab.export import export_run, load_bundle
    from questlab.predict import load_predictor, predict_frame
    from questlab.store import Store

    train, test = frames()
    train.to_csv(HERE / "train.csv", index=False)
    test.to_csv(HERE / "test.csv", index=False)
    store = Store(HERE / "store" / "mlflow.db")
    common = {"seed": 42, "folds": {"n_splits": 3, "seed": 42}, "bootstrap": 20, "parallel_folds": 1}
    tfidf = ql.run(
        {**common, "name": "tfidf", "model": {"name": "tfidf", "params": {"min_df": 1, "max_features": 500}}},
        HERE / "train.csv",
        HERE / "test.csv",
        store=store,
        quiet=True,
    ).id
    mean = ql.run(
        {**common, "name": "mean", "model": {"name": "mean"}},
        HERE / "train.csv",
        HERE / "test.csv",
        store=store,
        quiet=True,
    ).id
    spec = EnsembleSpec(average="rank", postprocess="distribution", question_share=True)
    ens, _ = build_ensemble(store, [tfidf, mean], spec, name="ensemble", n_boot=20, test=HERE / "test.csv")
    export_run(store, ens, HERE / "bundle")
    expected = HERE / "expected"
    expected.mkdir()
    from questlab.data import load_test

    test_frame = load_test(HERE / "test.csv")
    runs = {"tfidf": tfidf, "mean": mean, "ensemble": ens}
    for name, run_id in runs.items():
        predict_frame(load_predictor(store, run_id), test_frame).to_csv(expected / f"{name}.csv", index=False)
    predict_frame(load_bundle(HERE / "bundle"), test_frame).to_csv(expected / "bundle.csv", index=False)
    (expected / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
