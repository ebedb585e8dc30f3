"""Benchmark: the lookup API and the bare endpoint called in-process through ASGI, no server or client.

What the handler itself costs per request, apart from uvicorn, the network and the load generator
(which wrk's numbers also hold). Rounds alternate between the two apps; medians are printed.

    RECSYS_DATA_DIR=/tmp/i4 RECSYS_SOURCE_URL=duckdb:////tmp/i4/source.duckdb python bench/inprocess_api.py

The data dir needs a published snapshot (e.g. ``recsys generate --preset tiny`` then ``recsys pipeline``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bare_app  # noqa: E402

from api.app import create_app  # noqa: E402
from recsys.config import load_settings  # noqa: E402

SCOPE = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/post/recommendations/", "raw_path": b"/post/recommendations/", "root_path": "",
    "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
}  # fmt: skip


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def measure(requests: int, rounds: int) -> dict[str, list[float]]:
    app = create_app(load_settings())
    statuses = set()

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async with app.router.lifespan_context(app):
        current = app.state.watcher.current
        queries = [f"id={user_id}&time={current.manifest['cutoff']}T12:00:00".encode()
                   for user_id in np.resize(current.user_ids, requests).tolist()]  # fmt: skip
        micros = {"bare": [], "lookup": []}
        for _ in range(rounds):
            for name, target in (("bare", bare_app.app), ("lookup", app)):
                started = time.perf_counter()
                for query in queries:
                    await target({**SCOPE, "query_string": query, "state": {}}, receive, send)
                micros[name].append((time.perf_counter() - started) / len(queries) * 1e6)
    if statuses != {200}:
        raise SystemExit(f"unexpected statuses {sorted(statuses)}")
    return micros


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    micros = asyncio.run(measure(args.requests, args.rounds))
    bare, lookup = np.median(micros["bare"]), np.median(micros["lookup"])
    print(f"µs per request (median of {args.rounds} rounds of {args.requests:,}): bare {bare:.1f}, "
          f"lookup {lookup:.1f}, the lookup's own work {lookup - bare:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
