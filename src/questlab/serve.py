"""HTTP predictions for new pairs from a recorded run (FastAPI).

``questlab serve RUN_ID`` (or ``--model BUNDLE``) loads the fold models once and answers
``POST /predict`` with ``{"pairs": [{qa_id?, question_title, question_body, answer, category,
host, ...}]}`` → ``{"run_id", "predictions": [{"qa_id", <30 targets>}]}``. Input is validated
with the same rules as CSV files; a bad pair is a 422 naming the field and the pair's index.
"""

from __future__ import annotations

import pandas as pd
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from questlab.predict import Predictor
from questlab.schema import ID, INPUT_COLUMNS, TARGETS


class Pair(BaseModel):
    """One question–answer pair; only title, body, answer, category and host are required."""

    model_config = ConfigDict(extra="forbid")

    qa_id: int | None = None
    question_title: str = Field(min_length=1)
    question_body: str
    answer: str = Field(min_length=1)
    category: str = Field(min_length=1)
    host: str = Field(min_length=1)
    question_user_name: str = ""
    question_user_page: str = ""
    answer_user_name: str = ""
    answer_user_page: str = ""
    url: str = ""

    @field_validator("question_title", "answer", "category", "host")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must hold visible text")
        return value


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[Pair] = Field(min_length=1, max_length=10_000)


def create_app(predictor: Predictor) -> FastAPI:
    """A FastAPI app serving one loaded predictor (a run's or an exported bundle's)."""
    app = FastAPI(title="questlab", description=f"QUEST ratings from run {predictor.run_id}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "run_id": predictor.run_id, "targets": list(TARGETS)}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        frame = pd.DataFrame([p.model_dump() for p in request.pairs])
        frame[ID] = [p.qa_id if p.qa_id is not None else i for i, p in enumerate(request.pairs)]
        frame = frame[[ID, *INPUT_COLUMNS]]
        try:
            pred = predictor.predict(frame)
        except ValueError as exc:  # a model refusing the input: the client's problem, said plainly
            raise HTTPException(status_code=422, detail=str(exc)) from None
        rows = [
            {ID: int(i), **dict(zip(TARGETS, map(float, row), strict=True))}
            for i, row in zip(frame[ID], pred, strict=True)
        ]
        return {"run_id": predictor.run_id, "predictions": rows}

    return app
