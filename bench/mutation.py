"""Mutation testing of the modules where a silent error costs most, each against its fast tests.

mutmut 3 (``pip install -e '.[bench]'``) mutates one module at a time: for each, a snapshot of
``src/``, ``tests/`` and ``pyproject.toml`` is taken under ``mutants/bench/<name>/`` (git-ignored;
the snapshot keeps edits made meanwhile out of a run), a ``setup.cfg`` there names the module to
mutate and the tests to run, and ``mutmut run`` is started in it. The table gives, per module,
mutants, killed, survived, timeout, no tests, and the score (killed + timeout) / mutants, which
is mutmut's own score (a timeout is a mutant the tests caught by never finishing). Each surviving
mutant's diff is written to ``mutants/bench/<name>/survivors.txt``.

    .venv/bin/python bench/mutation.py                  # every module
    .venv/bin/python bench/mutation.py metric folds     # some of them
    .venv/bin/python bench/mutation.py --max-children 1 # fewer parallel test processes

``[tool.mutmut]`` in pyproject.toml holds the same settings for all five modules at once, for a
plain ``mutmut run`` / ``mutmut browse`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "mutants" / "bench"

# module name -> (file to mutate, the fast tests that cover it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "metric": ("src/questlab/metric.py", ["tests/test_metric.py"]),
    "folds": ("src/questlab/folds.py", ["tests/test_folds.py"]),
    "postprocess": ("src/questlab/ensemble/postprocess.py", ["tests/ensemble/test_postprocess.py"]),
    "data": ("src/questlab/data.py", ["tests/test_data.py"]),
    "combine": (
        "src/questlab/ensemble/combine.py",
        ["tests/ensemble/test_combine_maths.py", "tests/ensemble/test_nested_honesty.py"],
    ),
}
PYTEST_ARGS = ["-p", "no:randomly", "-p", "no:cacheprovider", "-q"]
SHOW = """
import sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
from mutmut.stats import status_by_exit_code
for name in sys.argv[1:]:
    m = find_mutant(name)
    print(f"# {name}: {status_by_exit_code[m.exit_code_by_key[name]]}")
    print(get_diff_for_mutant(name, path=m.path))
"""
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 36: "timeout", 24: "timeout",
          -24: "timeout", 152: "timeout", 255: "timeout"}  # fmt: skip  # mutmut.stats.status_by_exit_code


def _snapshot(name: str, module: str, tests: list[str], baseline: bool = False) -> Path:
    """A fresh copy of the project with a setup.cfg telling mutmut what to mutate and run.

    ``baseline``: the test files as committed (``git show HEAD:...``), for "before" figures; a
    test file that is not committed yet is left out.
    """
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(REPO / "src", work / "src", ignore=skip)
    shutil.copytree(REPO / "tests", work / "tests", ignore=skip)
    if baseline:
        committed = []
        for test in tests:
            shown = subprocess.run(["git", "show", f"HEAD:{test}"], cwd=REPO, capture_output=True, text=True)
            if shown.returncode == 0:
                (work / test).write_text(shown.stdout)
                committed.append(test)
        if not committed:
            raise SystemExit(f"{name}: none of its tests is committed, so there is no baseline to measure")
        tests = committed
    # mutmut reads [tool.mutmut] before setup.cfg: drop it from the copy so the per-module cfg counts.
    text = (REPO / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text))
    lines = "\n    ".join
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src\n"
        f"only_mutate = {module}\n"
        f"pytest_add_cli_args_test_selection =\n    {lines(tests)}\n"
        f"pytest_add_cli_args =\n    {lines(PYTEST_ARGS)}\n"
    )
    return work


def _count(work: Path, module: str) -> dict[str, int]:
    meta = json.loads((work / "mutants" / f"{module}.meta").read_text())
    codes = meta["exit_code_by_key"]
    counts = {"mutants": len(codes), "killed": 0, "survived": 0, "timeout": 0, "no tests": 0, "other": 0}
    for code in codes.values():
        status = STATUS.get(code, "other")
        counts[status if status in counts else "other"] += 1
    counts["survivors"] = [k for k, c in codes.items() if STATUS.get(c) != "killed" and STATUS.get(c) != "timeout"]
    return counts


def _refresh_tests(name: str, module: str) -> tuple[Path, list[str]]:
    """For ``--recheck``: the last run's folder with today's tests, and the mutants that got through.

    Only valid while the module itself is unchanged (checked): then a mutant killed before is
    still killed by a superset of the tests, and only the survivors need running again.
    """
    work = WORK / name
    if not (work / "mutants" / f"{module}.meta").exists():
        raise SystemExit(f"{name}: no earlier run in {work} to recheck; run without --recheck first")
    if (work / module).read_bytes() != (REPO / module).read_bytes():
        raise SystemExit(f"{name}: {module} changed since the last run; run without --recheck")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for target in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(REPO / "tests", target, ignore=skip)
    return work, _count(work, module)["survivors"]


def run_module(
    name: str, max_children: int, env: dict[str, str], baseline: bool = False, recheck: bool = False
) -> dict:
    module, tests = MODULES[name]
    if recheck:
        work, names = _refresh_tests(name, module)
    else:
        work, names = _snapshot(name, module, tests, baseline), []
    mutmut = [str(Path(sys.executable).with_name("mutmut"))]
    t0 = time.perf_counter()
    proc = subprocess.run([*mutmut, "run", "--max-children", str(max_children), *names], cwd=work, env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    (work / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
    if not (work / "mutants" / f"{module}.meta").exists():
        raise SystemExit(f"{name}: mutmut produced no results (exit {proc.returncode}); see {work}/mutmut-run.log")
    counts = _count(work, module)
    # what `mutmut show NAME` prints, for every survivor in one process (one `show` each takes seconds)
    shown = subprocess.run([sys.executable, "-c", SHOW, *counts["survivors"]], cwd=work, env=env,
                           capture_output=True, text=True)  # fmt: skip
    (work / "survivors.txt").write_text(shown.stdout + shown.stderr)
    return {"module": name, "seconds": seconds, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel test processes (default 2)")
    parser.add_argument("--tests", nargs="+", help="run these test files instead (one module only)")
    parser.add_argument("--baseline", action="store_true", help="use the test files as committed (git HEAD)")
    parser.add_argument(
        "--recheck", action="store_true", help="rerun only the last run's survivors against today's tests"
    )
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(MODULES)}")
    if args.tests:
        if len(args.modules) != 1:
            parser.error("--tests needs exactly one module")
        MODULES[args.modules[0]] = (MODULES[args.modules[0]][0], args.tests)
    missing = [t for name in args.modules or MODULES for t in MODULES[name][1] if not (REPO / t).exists()]
    if missing:
        parser.error(f"no test file {missing[0]}")
    env = dict(os.environ)
    # The copied tests look for the data beside the *copy*: point them at the real folder.
    env.setdefault("QUEST_DATA", str((REPO.parent / "shared" / "quest").resolve()))
    modules = args.modules or list(MODULES)
    rows = [run_module(name, args.max_children, env, args.baseline, args.recheck) for name in modules]
    print(f"{'module':<12} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} {'no tests':>8} "
          f"{'score':>6} {'time':>7}")  # fmt: skip
    for r in rows:
        score = (r["killed"] + r["timeout"]) / r["mutants"] if r["mutants"] else float("nan")
        print(f"{r['module']:<12} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>8} {r['timeout']:>7} "
              f"{r['no tests']:>8} {score:>6.1%} {r['seconds']:>6.0f}s")  # fmt: skip
    print(f"survivors' diffs: {WORK}/<module>/survivors.txt")


if __name__ == "__main__":
    main()
