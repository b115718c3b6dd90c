"""Load-test `questlab serve`: req/s and p50/p99 latency with 1 and 16 clients, batched vs unbatched.

Usage: python bench/serve_load.py [--store URI --run RUN_ID] [--seconds 15] [--clients 1,16]
                                  [--mode both|batched|unbatched] [--window-ms 5] [--pairs 1]

Without --run, a TF-IDF run (configs/tfidf.yaml, 5 folds) is trained on the full train.csv into a
throwaway store (~15-20 s). Each mode starts the real server (uvicorn on 127.0.0.1, a free port,
its own process), then N asyncio clients (one httpx connection each) send requests of --pairs
pairs taken round-robin from test.csv, back to back, for --seconds each; only 200s count.
"Unbatched" is 0.2.0's behaviour (each request predicted on its own in the thread pool).
Target (2 cores): >= 40 req/s and p99 <= 250 ms at 16 clients, batched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from _server import free_port, wait_until_healthy  # bench/_server.py: run as python bench/X.py

ROOT = Path(__file__).resolve().parents[1]
QUEST = ROOT.parent / "shared" / "quest"


def serve(store: str, run_id: str, port: int, window_ms: float | None) -> None:
    """The server process: the run's predictor behind create_app, under uvicorn."""
    import uvicorn

    from questlab.predict import load_predictor
    from questlab.serve import create_app
    from questlab.store import Store

    predictor = load_predictor(Store(store, create=False), run_id)
    uvicorn.run(create_app(predictor, batch_window_ms=window_ms), host="127.0.0.1", port=port, log_level="warning")


def start_server(store: str, run_id: str, window_ms: float | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", "--store", store, "--run", run_id, "--port", str(port)]
    cmd += ["--window-ms", "none" if window_ms is None else str(window_ms)]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(proc, url)
    return proc, url


async def drive(url: str, payloads: list[dict], clients: int, seconds: float) -> dict:
    """``clients`` concurrent clients sending back to back for ``seconds``; latencies of 200s."""
    latencies: list[float] = []
    failures = 0
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = k
            while time.perf_counter() < stop:
                start = time.perf_counter()
                response = await http.post("/predict", json=payloads[i % len(payloads)])
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures += 1
                i += clients

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {
        "requests": len(lat),
        "failures": failures,
        "rps": len(lat) / wall,
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }


def train_run(store: str, train: Path) -> str:
    from questlab.config import load_config
    from questlab.cv import run_cv
    from questlab.store import Store

    start = time.perf_counter()
    run_id = run_cv(load_config(ROOT / "configs" / "tfidf.yaml"), train, store=Store(store), say=lambda _m: None)
    print(f"trained TF-IDF run {run_id[:8]} on {train} in {time.perf_counter() - start:.1f} s", flush=True)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URI or folder holding --run (default: a throwaway one)")
    parser.add_argument("--run", help="a TF-IDF run id (default: train one on --train)")
    parser.add_argument("--train", type=Path, default=QUEST / "train.csv")
    parser.add_argument("--test", type=Path, default=QUEST / "test.csv")
    parser.add_argument("--seconds", type=float, default=15.0, help="per client count and mode")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--pairs", type=int, default=1, help="pairs per request")
    parser.add_argument("--mode", choices=["both", "batched", "unbatched"], default="both")
    parser.add_argument("--window-ms", default="5", help="batch window of the batched mode")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.store, args.run, args.port, None if args.window_ms == "none" else float(args.window_ms))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        run_id = args.run or train_run(store, args.train)
        rows = pd.read_csv(args.test, dtype=str, keep_default_na=False).to_dict(orient="records")
        pairs = [{**r, "qa_id": int(r["qa_id"])} for r in rows]
        payloads = [{"pairs": pairs[i : i + args.pairs]} for i in range(0, len(pairs) - args.pairs + 1, args.pairs)]
        modes = {"batched": float(args.window_ms), "unbatched": None}
        if args.mode != "both":
            modes = {args.mode: modes[args.mode]}
        counts = [int(c) for c in args.clients.split(",")]
        results = []
        for mode, window in modes.items():
            proc, url = start_server(store, run_id, window)
            try:
                asyncio.run(drive(url, payloads, 4, 2.0))  # warm-up: first-call costs, hashing memo
                for n in counts:
                    load = os.getloadavg()[0]
                    results.append((mode, n, asyncio.run(drive(url, payloads, n, args.seconds)), load))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"\nrun {run_id[:8]}, {args.pairs} pair(s)/request, {args.seconds:.0f} s each, {os.cpu_count()} cores")
    header = ("mode", "clients", "requests", "req/s", "p50 ms", "p99 ms", "fail", "load")
    print(f"{header[0]:<10} " + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], (7, 8, 7, 7, 7, 4, 5), strict=True)))
    for mode, n, r, load in results:
        print(
            f"{mode:<10} {n:>7} {r['requests']:>8} {r['rps']:>7.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
            f"{r['failures']:>4} {load:>5.2f}"
        )
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
