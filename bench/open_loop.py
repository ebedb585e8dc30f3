"""Benchmark: the open loop of bench/serve_full.py against the bare Starlette endpoint and the lookup
API, side by side and alternating, so that the host's share of the tail is seen next to the API's.

    python bench/open_loop.py --data /tmp/full/train --source duckdb:////tmp/full/source-bench.duckdb \\
        --rounds 2 --seconds 60
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_full import PORTS, REPO, STEAL_BANDS, bench_app, open_loop, request_users, start, stop, wait_ready  # noqa: E402

from recsys.config import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1000)
    args = parser.parse_args()
    env = {**os.environ, "RECSYS_DATA_DIR": str(args.data), "RECSYS_SOURCE_URL": args.source,
           "PYTHONPATH": str(REPO), "RECSYS_LOG_LEVEL": "WARNING"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("RECSYS_DATA_DIR", "RECSYS_SOURCE_URL")})
    sample_ids = request_users(load_settings())
    servers = {
        "bare": start("bare", bench_app("bare_app", PORTS["bare"]), env),
        "lookup": start("lookup", [sys.executable, "-m", "recsys", "serve", "--port", str(PORTS["lookup"])], env),
    }  # fmt: skip
    results = {name: [] for name in servers}
    try:
        wait_ready(PORTS["lookup"], "/ready")
        wait_ready(PORTS["bare"], "/post/recommendations/?id=1")
        for _ in range(args.rounds):
            for name in servers:
                results[name].append(uvloop.run(open_loop(PORTS[name], sample_ids, args.rate, args.seconds, 50)))
    finally:
        stop(servers)
    print(f"{platform.machine()}, {os.cpu_count()} cores; open loop {args.rate:,.0f} req/s for {args.seconds} s, "
          f"{args.rounds} rounds alternating\n")  # fmt: skip
    print(
        "| server | errors | p50 ms (per round) | p99 ms (per round) | max ms | median p99 | host steal "
        "(per round) | p99 ms over seconds with steal < 5% (count) |"
    )
    print("|---|---:|---|---|---:|---:|---|---|")
    for name, runs in results.items():
        p50 = ", ".join(f"{r['p50_ms']:.2f}" for r in runs)
        p99 = ", ".join(f"{r['p99_ms']:.1f}" for r in runs)
        steal = ", ".join(f"{r['steal']:.1%}" for r in runs)
        quiet = ", ".join(f"{r['quiet_p99_ms']:.1f} ({r['quiet_seconds']})" for r in runs)
        print(f"| {name} | {sum(r['errors'] for r in runs)} | {p50} | {p99} | {max(r['max_ms'] for r in runs):.0f} "
              f"| {np.median([r['p99_ms'] for r in runs]):.1f} | {steal} | {quiet} |")  # fmt: skip
    print("\nRequests over 10 ms, by the host's steal in their second (all rounds; in brackets: seconds):\n")
    print("| server | " + " | ".join(f"steal {band}" for band in STEAL_BANDS) + " |")
    print("|---|" + "---:|" * len(STEAL_BANDS))
    for name, runs in results.items():
        cells = []
        for band in STEAL_BANDS:
            slow, requests, seconds = (sum(r["slow_by_steal"][band][key] for r in runs)
                                       for key in ("slow", "requests", "seconds"))  # fmt: skip
            cells.append(f"{slow / requests:.2%} ({seconds})" if requests else f"- ({seconds})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
