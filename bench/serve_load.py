"""Load-test `questlab serve`: req/s and p50/p99 latency with 1 and 16 clients, batched vs unbatched.

Usage: python bench/serve_load.py [--store URI --run RUN_ID] [--seconds 15] [--clients 1,16]
                                  [--mode both|batched|unbatched|none] [--window-ms 5] [--pairs 1]
                                  [--abuse normal,unique1mb,big9mb,slow] [--abuse-seconds 10]
                                  [--nofile 256] [--slow-sockets 300]

Without --run, a TF-IDF run (configs/tfidf.yaml, 5 folds) is trained on the full train.csv into a
throwaway store (~15-20 s). Each mode starts the real server (uvicorn on 127.0.0.1, a free port,
its own process), then N asyncio clients (one httpx connection each) send requests of --pairs
pairs taken round-robin from test.csv, back to back, for --seconds each; only 200s count.
"Unbatched" is 0.2.0's behaviour (each request predicted on its own in the thread pool).
Target (2 cores): >= 40 req/s and p99 <= 250 ms at 16 clients, batched.

--abuse: then one normal client (--normal-clients) sends one-pair requests for --abuse-seconds,
alone ("normal") and beside each abusive client, each on a fresh batched server started with
`ulimit -n` --nofile: "unique1mb" posts pairs with a unique 1 MB answer back to back, "big9mb"
pairs with a unique 9 MB answer back to back, "slow" keeps --slow-sockets connections that send
their headers a byte a second (reconnecting when closed). Printed: the normal client's req/s,
p50/p99 and failures, what the abuser got done, and the server's RSS (start, peak, end) and open
descriptors. Runs against whichever questlab is importable (PYTHONPATH), so a checkout from
before the connection bounds can be measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing as mp
import os
import random
import resource
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
    app = create_app(predictor, batch_window_ms=window_ms)
    try:
        from questlab.serve import run_server  # `questlab serve`'s connection bounds, defaults
    except ImportError:  # a questlab from before them: plain uvicorn, as its `serve` ran
        run_server = None
    if run_server is None:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    else:
        run_server(app, "127.0.0.1", port)


def start_server(
    store: str, run_id: str, window_ms: float | None, nofile: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", "--store", store, "--run", run_id, "--port", str(port)]
    cmd += ["--window-ms", "none" if window_ms is None else str(window_ms)]

    def limit_fds() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    proc = subprocess.Popen(cmd, preexec_fn=limit_fds)
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


# --- abusive clients ------------------------------------------------------------------------------
WORDS = [f"w{i:x}" for i in range(50_000)]


def unique_text(rng: random.Random, chars: int, tag: str) -> str:
    """``chars`` characters of random words, starting with ``tag`` (so even its first 100k are new)."""
    words = rng.choices(WORDS, k=chars // 6 + 1)
    return (tag + " " + " ".join(words))[:chars]


async def big_pairs(url: str, pairs: list[dict], chars: int, stop: asyncio.Event, got: collections.Counter) -> None:
    """Pairs with a unique ``chars``-character answer, back to back (one connection)."""
    rng = random.Random(chars)
    base = unique_text(rng, chars, "base")
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        k = 0
        while not stop.is_set():
            text = unique_text(rng, chars, f"u{k}") if chars <= 2_000_000 else f"u{k} " + base
            body = {"pairs": [{**pairs[k % len(pairs)], "answer": text}]}
            try:
                got[(await http.post("/predict", json=body)).status_code] += 1
            except httpx.HTTPError as exc:
                got[type(exc).__name__] += 1
            k += 1


async def slow_sockets(url: str, n: int, stop: asyncio.Event, got: collections.Counter) -> None:
    """``n`` connections sending request headers a byte a second, reopened when the server closes one."""
    host, port = url.removeprefix("http://").split(":")
    trickle = b"X-Slow: 1\r\n"

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                got["connect failed"] += 1
                await asyncio.sleep(0.5)
                continue
            got["opened"] += 1
            try:
                writer.write(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
                k = 0
                while not stop.is_set():
                    try:
                        if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                            got["closed by server"] += 1
                            break
                    except TimeoutError:
                        writer.write(trickle[k % len(trickle) : k % len(trickle) + 1])
                        await writer.drain()
                        k += 1
            except OSError:
                got["closed by server"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(n)))


def server_memory(pid: int) -> tuple[float, int]:
    """RSS (MB) and open descriptors of the server process."""
    rss = next(int(x.split()[1]) for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def abuser_process(url: str, kind: str, pairs: list[dict], slow: int, seconds: float, out: mp.Queue) -> None:
    """The abusive client, in its own process (its CPU work must not slow the measuring client)."""

    async def main() -> collections.Counter:
        stop, got = asyncio.Event(), collections.Counter()
        if kind == "slow":
            task = asyncio.create_task(slow_sockets(url, slow, stop, got))
        else:
            task = asyncio.create_task(
                big_pairs(url, pairs, 1_000_000 if kind == "unique1mb" else 9_000_000, stop, got)
            )
        await asyncio.sleep(seconds)
        stop.set()
        try:
            await asyncio.wait_for(task, 60)
        except TimeoutError:
            task.cancel()
        return got

    out.put(dict(asyncio.run(main())))


async def abuse_scenario(
    url: str, pid: int, kind: str, payloads: list[dict], pairs: list[dict], args: argparse.Namespace
) -> dict:
    stop = asyncio.Event()
    abuser, out = None, mp.Queue()
    rss0, _ = server_memory(pid)
    if kind != "normal":
        seconds = args.abuse_seconds + 2
        abuser = mp.Process(target=abuser_process, args=(url, kind, pairs, args.slow_sockets, seconds, out))
        abuser.start()
        await asyncio.sleep(2.0)  # the abuse is under way
    samples = [rss0]

    async def sample() -> None:
        while not stop.is_set():
            samples.append(server_memory(pid)[0])
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    normal = await drive(url, payloads, args.normal_clients, args.abuse_seconds)
    rss_end, fds = server_memory(pid)
    stop.set()
    await sampler
    got = {}
    if abuser:
        got = await asyncio.to_thread(out.get, timeout=120)
        abuser.join()
    return {**normal, "rss0": rss0, "rss_peak": max(samples), "rss_end": rss_end, "fds": fds, "abuser": got}


def run_abuse(store: str, run_id: str, payloads: list[dict], pairs: list[dict], args: argparse.Namespace) -> list:
    results = []
    for kind in args.abuse.split(","):
        proc, url = start_server(store, run_id, float(args.window_ms), args.nofile)
        try:
            asyncio.run(drive(url, payloads, 1, 2.0))  # warm-up
            load = os.getloadavg()[0]
            results.append((kind, asyncio.run(abuse_scenario(url, proc.pid, kind, payloads, pairs, args)), load))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return results


def print_abuse(results: list, args: argparse.Namespace) -> None:
    print(
        f"\nabuse: {args.normal_clients} normal client(s), 1 pair/request, {args.abuse_seconds:.0f} s each, "
        f"server ulimit -n {args.nofile or 'unchanged'}, {args.slow_sockets} slow sockets"
    )
    print(
        f"{'beside':<10} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>8} {'fail':>4} {'RSS MB start/peak/end':>22} "
        f"{'fds':>4} {'load':>5}  abuser got"
    )
    for kind, r, load in results:
        rss = f"{r['rss0']:.0f}/{r['rss_peak']:.0f}/{r['rss_end']:.0f}"
        print(
            f"{kind:<10} {r['rps']:>6.1f} {r['p50']:>7.0f} {r['p99']:>8.0f} {r['failures']:>4} {rss:>22} "
            f"{r['fds']:>4} {load:>5.2f}  {r['abuser'] or '-'}"
        )


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
    parser.add_argument("--mode", choices=["both", "batched", "unbatched", "none"], default="both")
    parser.add_argument("--abuse", default="", help="comma list of normal,unique1mb,big9mb,slow (module doc)")
    parser.add_argument("--abuse-seconds", type=float, default=10.0)
    parser.add_argument("--normal-clients", type=int, default=1)
    parser.add_argument("--nofile", type=int, default=256, help="the abuse servers' `ulimit -n` (0: unchanged)")
    parser.add_argument("--slow-sockets", type=int, default=300)
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
            modes = {args.mode: modes[args.mode]} if args.mode != "none" else {}
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
        abuse = run_abuse(store, run_id, payloads, pairs, args) if args.abuse else []
    if abuse:
        print_abuse(abuse, args)
    if not results:
        return
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
