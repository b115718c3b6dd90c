"""Synthetic QUEST-shaped predictions whose questions have several answers (no runs, no data files)."""

from __future__ import annotations

import numpy as np

from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS

Q_COLS = [TARGETS.index(t) for t in QUESTION_TARGETS]
A_COLS = [TARGETS.index(t) for t in ANSWER_TARGETS]


def question_world(
    answer_noise: float, seed: int = 0, n_questions: int = 400, answers: int = 3, members: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Questions with several answers; question truth shared by a question's rows, answer truth per row.

    Returns (member predictions (members, n, 30), truth (n, 30), folds (n,), groups (n,)). Each
    member's predictions = truth + a per-question error + a per-answer error of size
    ``answer_noise``; folds keep a question's answers together.
    """
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_questions), answers)
    truth = rng.random((len(groups), 30))
    truth[:, Q_COLS] = rng.random((n_questions, len(Q_COLS)))[groups]
    preds = [
        truth + rng.normal(0, 0.3, (n_questions, 30))[groups] + rng.normal(0, answer_noise, truth.shape)
        for _ in range(members)
    ]
    folds = groups % 5
    return np.stack(preds), truth, folds, groups
