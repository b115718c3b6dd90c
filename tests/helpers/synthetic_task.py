"""A task nobody built in: two text columns, a group column, three targets, an error metric.

Written only as a YAML file (``SPEC``), with a seeded frame whose targets follow the texts (so a
model can learn them): the tests run every command on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPEC = """\
name: reviews
description: product reviews and their replies, rated on three axes (synthetic)
id: review_id
texts:
  - {name: review, role: first}
  - {name: reply, role: second}
features: [shop]
optional: [author]
groups: {column: product}
targets:
  - {name: helpful, range: [0, 10], kind: continuous}
  - {name: polite, range: [1, 5], kind: ordinal, step: 1}
  - {name: clear, range: [1, 5], kind: ordinal, step: 0.5}
metric: mcrmse
"""

TARGETS = ("helpful", "polite", "clear")
_GOOD = ["great", "excellent", "useful", "clear", "thanks", "kind"]
_BAD = ["awful", "broken", "useless", "rude", "confusing", "late"]
_FILL = ["the", "product", "arrived", "and", "we", "it", "was", "box", "order", "price"]


def write_spec(folder: Path) -> Path:
    """Write the spec as ``folder/reviews.yaml`` and return its path."""
    path = Path(folder) / "reviews.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def make_frame(n_rows: int = 120, seed: int = 0, with_targets: bool = True) -> pd.DataFrame:
    """``n_rows`` reviews of ``n_rows // 3`` products; targets follow the share of good words."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        good = rng.random()
        words = [
            rng.choice(_GOOD) if rng.random() < good else rng.choice(_BAD) if rng.random() < 0.5 else rng.choice(_FILL)
            for _ in range(int(rng.integers(8, 30)))
        ]
        reply = [rng.choice(_GOOD if rng.random() < good else _FILL) for _ in range(int(rng.integers(3, 12)))]
        row = {
            "review_id": f"r{seed}-{i}",
            "review": " ".join(words),
            "reply": " ".join(reply),
            "shop": f"shop{i % 3}",
            "author": f"user{int(rng.integers(0, 50))}",
            "product": f"p{i // 3}",
        }
        if with_targets:
            row["helpful"] = float(np.clip(10 * good + rng.normal(0, 1), 0, 10))
            row["polite"] = float(np.clip(np.round(1 + 4 * good + rng.normal(0, 0.5)), 1, 5))
            row["clear"] = float(np.clip(np.round(2 * (1 + 4 * good + rng.normal(0, 0.7))) / 2, 1, 5))
        rows.append(row)
    return pd.DataFrame(rows)
