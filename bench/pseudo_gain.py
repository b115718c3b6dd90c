"""The honest gain of leak-free pseudo-labels: teacher run, pseudo-labels, student run on the same folds.

    .venv/bin/python bench/pseudo_gain.py configs/tfidf.yaml --train ../shared/quest/train.csv \
        --unlabelled ../shared/quest/test.csv --store /tmp/qlbench/store

1. teacher: grouped 5-fold CV of CONFIG on the train file (recorded run);
2. ``pseudo_label``: each teacher fold model labels the unlabelled file;
3. student: the same CONFIG on the teacher's folds (``folds.from_run``), fold k also training on
   the pseudo rows labelled by teacher fold k (never scored);
4. student vs teacher on the same out-of-fold rows: ``questlab.compare`` (paired bootstrap over
   questions, overall and per fold) and a t interval over the 5 paired fold differences.

Student fold k never sees a label of fold k's valid rows, directly or through the teacher, so its
CV is an honest (nested) estimate: nothing is chosen on the rows it is scored on. Runs, the
pseudo-label file and the embedding cache stay under --store / $QUESTLAB_CACHE, never in the repo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

import questlab as ql
from questlab.store import as_store
from questlab.teacher import pseudo_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--unlabelled", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True, help="a scratch store (outside the repo)")
    parser.add_argument("--teacher", help="reuse this finished teacher run instead of fitting one")
    parser.add_argument("--set", action="append", default=[], help="config override for both runs")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()

    store = as_store(str(args.store), create=True)
    t0 = time.perf_counter()
    if args.teacher:
        teacher = ql.load_run(args.teacher, store=store)
    else:
        teacher = ql.run(args.config, train=args.train, set=args.set, store=store)
    t1 = time.perf_counter()
    pseudo = args.store.parent / f"pseudo-{teacher.id[:8]}.csv"
    pseudo_label(store, teacher.id, args.unlabelled, pseudo)
    t2 = time.perf_counter()
    sets = [*args.set, f"folds.from_run={teacher.id}", f"name={teacher.name}-pseudo"]
    student = ql.run(args.config, train=args.train, set=sets, store=store, pseudo=pseudo)
    t3 = time.perf_counter()

    cmp = ql.compare(teacher, student, n_boot=args.n_boot)
    o = cmp.overall
    folds = cmp.per_fold
    diffs = folds["delta"].to_numpy()
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    used = student.record.folder.read_meta().model_extra["pseudo"]
    print(f"config {args.config} ({teacher.model}); teacher {teacher.id[:8]}, student {student.id[:8]}")
    print(f"pseudo rows used {used['rows_used']}, dropped (question in train) {used['rows_dropped']}")
    print(f"time: teacher {t1 - t0:.0f} s, pseudo-label {t2 - t1:.0f} s, student {t3 - t2:.0f} s")
    print(f"teacher CV {teacher.cv:.4f} ({teacher.ci[0]:.4f}..{teacher.ci[1]:.4f})")
    print(f"student CV {student.cv:.4f} ({student.ci[0]:.4f}..{student.ci[1]:.4f})")
    print(
        f"gain (student - teacher) {o['delta']:+.4f}, paired question bootstrap 95% CI "
        f"{o['low']:+.4f}..{o['high']:+.4f} ({o['verdict']})"
    )
    low, high = diffs.mean() - half, diffs.mean() + half
    print(f"per-fold differences: mean {diffs.mean():+.4f}, t 95% CI over {len(diffs)} folds {low:+.4f}..{high:+.4f}")
    print(folds[["a", "b", "delta", "low", "high"]].round(4).to_string())


if __name__ == "__main__":
    main()
