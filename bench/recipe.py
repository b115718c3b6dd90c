"""Run a recipe end to end (members, ensemble, submission) into a throwaway store, or compare ensembling steps.

Usage:
  python bench/recipe.py [--recipe fast] [--train ../shared/quest/train.csv] [--test ../shared/quest/test.csv]
      time per member and in total, the nested CV with its interval, and each step's nested gain
  python bench/recipe.py --compare RUN_A RUN_B ... --store STORE
      on finished runs made on the same folds: nested CV of rank-weight averaging, stacking and
      stacking with related targets, each with and without the question share, before and after
      distribution matching; gains with paired 95% question-bootstrap intervals
  python bench/recipe.py --compare RUN_A RUN_B ... --store STORE --subsets
      which members earn their place: rank weights + distribution matching (the built-ins'
      ensembling), nested, over every subset of two or more runs, each against all of them

Target (issue 15): `fast` at nested CV >= 0.39 in under 15 minutes on 2 cores. The embedding
member's vectors are cached under $QUESTLAB_CACHE: say whether the cache was warm.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _gain(d: dict) -> str:
    return f"{d['gain']:+.4f} ({d['ci_low']:+.4f}..{d['ci_high']:+.4f})"


def run(args: argparse.Namespace) -> None:
    from questlab.recipes import run_recipe
    from questlab.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "store"))
        start = time.perf_counter()
        out = run_recipe(args.recipe, args.train, args.test, store=store, submission=Path(tmp) / "sub.csv",
                         say=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
        total = time.perf_counter() - start
        ens = store.get(out.ensemble_id).metrics
        r = out.report
        print(f"recipe {args.recipe}: total {total:.0f} s (members {out.seconds['members']:.0f} s, "
              f"ensemble {out.seconds['ensemble']:.0f} s)")  # fmt: skip
        for m in out.members:
            print(f"  member {m.name}: {m.action} in {m.seconds:.0f} s, CV {m.cv:.4f} ({m.ci[0]:.4f}..{m.ci[1]:.4f})")
        print(f"nested CV {r['nested_score']:.4f} ({ens['cv_ci_low']:.4f}..{ens['cv_ci_high']:.4f}); "
              f"in-sample {r['in_sample_score']:.4f} (not a gain)")  # fmt: skip
        print(f"  ensemble over the best member: {_gain(r['nested_gain'])}")
        if "question_share_nested_gain" in r:
            print(f"  question share: {_gain(r['question_share_nested_gain'])} on {len(r['question_share_chosen'])} "
                  "targets")  # fmt: skip
        if "postprocess_nested_gain" in r:
            print(f"  post-processing: {_gain(r['postprocess_nested_gain'])}")
        from questlab.cli.common import fold_mean_lines

        for line in fold_mean_lines(r):
            print(f"  {line}")


def _members(args: argparse.Namespace) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """The --compare runs: names, truth, folds, groups, OOF matrix (members x rows x 30), rank references."""
    from questlab.ensemble_runs import _member_matrix, _references, check_members, load_member
    from questlab.metric import mean_spearman
    from questlab.schema import TARGETS
    from questlab.store import Store

    store = Store(args.store, create=False)
    members = [load_member(store, r) for r in args.compare]
    check_members(members)
    truth = members[0].truth[list(TARGETS)].to_numpy(dtype=np.float64)
    folds, groups = members[0].oof["fold"].to_numpy(), members[0].oof["group"].to_numpy()
    x, refs = _member_matrix(members), _references(members, "rank")
    names = [f"{m.record.run_id[:8]} ({m.record.name})" for m in members]
    for name, xi in zip(names, x, strict=True):
        print(f"member {name}: CV {mean_spearman(truth, xi):.4f}")
    return names, truth, folds, groups, x, refs


def compare(args: argparse.Namespace) -> None:
    from questlab.ensemble.combine import EnsembleSpec, gain_summary, nested_fit
    from questlab.metric import mean_spearman

    _, truth, folds, groups, x, refs = _members(args)
    base = base_pp = None
    for method in ("weights", "stack", "stack+related"):
        for share in (False, True):
            spec = EnsembleSpec(per_target=True, average="rank", method=method, question_share=share,
                                postprocess="distribution")  # fmt: skip
            t0 = time.perf_counter()
            res = nested_fit(x, truth, folds, groups, spec, refs)
            if base is None:  # rank-weight average, no share: the reference, before and after post-processing
                base, base_pp = res.nested_blend, res.nested
            line = f"{method:14s} share={share!s:5s}: nested {mean_spearman(truth, res.nested_blend):.4f} before pp"
            line += f", {mean_spearman(truth, res.nested):.4f} after pp"
            line += f"; vs rank weights before pp {_gain(gain_summary(truth, base, res.nested_blend, groups, 200))}"
            line += f", after pp {_gain(gain_summary(truth, base_pp, res.nested, groups, 200))}"
            if share:
                line += f"; share gain {_gain(gain_summary(truth, res.nested_unshared, res.nested_blend, groups, 200))}"
            print(f"{line} [{time.perf_counter() - t0:.0f} s]", flush=True)


def subsets(args: argparse.Namespace) -> None:
    from itertools import combinations

    from questlab.ensemble.combine import EnsembleSpec, fold_mean_summary, gain_summary, nested_fit
    from questlab.metric import fold_mean_score, mean_spearman

    names, truth, folds, groups, x, refs = _members(args)
    spec = EnsembleSpec(per_target=True, average="rank", postprocess="distribution")
    everything = tuple(range(len(names)))
    results = {}
    for size in range(len(names), 1, -1):  # all members first: the reference of every other line
        for subset in combinations(everything, size):
            res = nested_fit(x[list(subset)], truth, folds, groups, spec, [refs[i] for i in subset])
            results[subset] = res.nested
            line = f"{' + '.join(names[i] for i in subset)}: nested {mean_spearman(truth, res.nested):.4f}"
            line += f" (mean of the outer folds {fold_mean_score(truth, res.nested, folds):.4f})"
            if size < len(names):
                line += f", vs all {_gain(gain_summary(truth, results[everything], res.nested, groups, 200))}"
                fm = fold_mean_summary(truth, results[everything], res.nested, folds, groups, 200)
                line += f" (fold means: {fm['gain']:+.4f} ({fm['gain_ci_low']:+.4f}..{fm['gain_ci_high']:+.4f}))"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--train", default=str(ROOT.parent / "shared" / "quest" / "train.csv"))
    parser.add_argument("--test", default=str(ROOT.parent / "shared" / "quest" / "test.csv"))
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="finished runs on the same folds")
    parser.add_argument("--store", help="the store of the --compare runs")
    parser.add_argument("--subsets", action="store_true", help="with --compare: every subset of the runs")
    args = parser.parse_args()
    if args.subsets and not args.compare:
        parser.error("--subsets needs --compare RUN ...")
    if args.subsets:
        subsets(args)
    elif args.compare:
        compare(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
