"""Fuzz `questlab serve` with schemathesis against its own /openapi.json.

Usage: python bench/http_fuzz.py [--store URI --run RUN_ID] [--max-examples 100] [--max-time 180]
                                 [--seed 0] [--workers 1] [--keep DIR]

Without --run, a TF-IDF run (300 rows of train.csv, 3 folds, max_features 2000) is trained into a
throwaway store (a few seconds). The real server (``questlab serve``, uvicorn on 127.0.0.1, a free
port, its own process) is then fuzzed by the schemathesis CLI: every phase (examples, coverage,
fuzzing, stateful), every check, at most --max-examples cases per operation and --max-time
seconds, twice on the schema as served: valid and invalid data, then valid data only (the
schema states the server's rules, e.g. the visible-text pattern, so generated pairs reach a
prediction). Printed per pass, from the HAR log and JUnit report schemathesis writes: requests sent per operation and
status code, 5xx responses, and failures by check (kind). Needs the ``bench`` extra
(``pip install -e '.[bench]'``: schemathesis >= 4).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
from _server import free_port, wait_until_healthy  # bench/_server.py: run as python bench/X.py

ROOT = Path(__file__).resolve().parents[1]
QUEST = ROOT.parent / "shared" / "quest"
BIN = Path(sys.executable).parent


def tiny_run(store: str, work: Path) -> str:
    """A 3-fold TF-IDF run on the first 300 train rows; returns its id."""
    from questlab.config import parse_config
    from questlab.cv import run_cv
    from questlab.store import Store

    train = work / "train_300.csv"
    pd.read_csv(QUEST / "train.csv").head(300).to_csv(train, index=False)
    cfg = {"name": "fuzz-target", "folds": {"n_splits": 3}, "bootstrap": 0}
    cfg["model"] = {"name": "tfidf", "params": {"max_features": 2000}}
    return run_cv(parse_config(cfg), train, store=Store(store), say=lambda _: None)


def start_server(store: str, run_id: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(BIN / "questlab"), "serve", run_id, "--store", store, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(proc, url)
    return proc, url


def fuzz(url: str, out: Path, args: argparse.Namespace, schema: Path | None = None, mode: str = "all") -> int:
    """Run the schemathesis CLI on the served schema (or ``schema``, a file); its reports land in
    ``out``. Returns its exit code (1: failures found)."""
    location = [str(schema), "--url", url] if schema else [f"{url}/openapi.json"]
    cmd = [
        str(BIN / "schemathesis"), "run", *location, "--checks", "all",
        "--mode", mode, "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
        "--seed", str(args.seed),
        "--workers", str(args.workers), "--report", "har,json,junit", "--report-dir", str(out),
        "--request-timeout", "30", "--no-color",
    ]  # fmt: skip
    with open(out / "schemathesis.log", "w") as log:
        # cwd: schemathesis and hypothesis keep their databases (.schemathesis/, .hypothesis/) there
        env = {**os.environ, "NO_COLOR": "1"}
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=out.parent).returncode


def summarise(out: Path) -> dict:
    """Requests and status codes from the HAR log; failures by check from the JUnit report."""
    har = next(out.glob("har-*.json"), None)
    entries = json.loads(har.read_text())["log"]["entries"] if har else []
    statuses = collections.Counter(e["response"]["status"] for e in entries)
    per_op: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for e in entries:
        per_op[f"{e['request']['method']} {httpx.URL(e['request']['url']).path}"][e["response"]["status"]] += 1
    kinds: collections.Counter[str] = collections.Counter()
    junit = next(out.glob("junit-*.xml"), None)
    if junit is not None:
        import xml.etree.ElementTree as ET

        for case in ET.parse(junit).getroot().iter("testcase"):
            for bad in [*case.findall("failure"), *case.findall("error")]:
                # Each distinct failure is a "- CODE Title" line (an <error> is a crash: its message)
                found = re.findall(r"^- ([A-Z]{2}\d{3} .+)$", bad.text or "", re.M)
                for kind in found or [f"{bad.tag}: {bad.get('message', '')}"]:
                    kinds[f"{case.get('name')}: {kind}"] += 1
    return {
        "requests": len(entries),
        "status_by_operation": {
            op: dict(sorted(c.items())) for op, c in sorted(per_op.items(), key=lambda x: -x[1].total())
        },
        "status_codes": dict(sorted(statuses.items())),
        "5xx": sum(n for s, n in statuses.items() if s >= 500),
        "failures_by_kind": dict(kinds.most_common()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="a store holding --run (default: a throwaway store with a fresh tiny run)")
    ap.add_argument("--run", help="the run to serve")
    ap.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    ap.add_argument("--max-time", type=int, default=180, help="time budget of the whole fuzzing, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="copy schemathesis's reports (HAR, JSON, JUnit, log) here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="questlab-fuzz-") as tmp:
        work = Path(tmp)
        store, run_id = args.store, args.run
        if run_id is None:
            store = str(work / "store")
            t0 = time.perf_counter()
            run_id = tiny_run(store, work)
            print(f"tiny TF-IDF run {run_id[:8]} trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        server, url = start_server(store, run_id)
        results, failed = {}, []
        try:
            for label, mode in (("valid_and_invalid", "all"), ("valid_only", "positive")):
                out = work / label
                out.mkdir()
                t0 = time.perf_counter()
                code = fuzz(url, out, args, None, mode)
                results[label] = {"seconds": round(time.perf_counter() - t0, 1), "schemathesis_exit": code}
                results[label] |= summarise(out)
                if code not in (0, 1):  # 1 = failures found (reported); anything else: it did not run
                    failed.append((out / "schemathesis.log").read_text()[-3000:])
                if args.keep:
                    shutil.copytree(out, args.keep / label, dirs_exist_ok=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(json.dumps({"run": run_id, **results}, indent=1))
        if failed:
            print("\n".join(failed), file=sys.stderr)
            raise SystemExit(2)


if __name__ == "__main__":
    main()
