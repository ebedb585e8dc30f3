"""Benchmark: the lookup API of two git revisions side by side, against the bare endpoint.

Each revision is checked out into a temporary worktree and served (`recsys serve`, one worker);
wrk runs rounds of 10 s against bare, old and new in turn, and the medians are compared. For telling
a regression from the host's drift, which moves all three alike.

    python bench/compare_apis.py --data /tmp/full/train --source duckdb:////tmp/full/source-bench.duckdb \\
        --old 82a3d58 --new 6d3ae1b --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_full import REPO, bench_app, request_users, start, stop, wait_ready, wrk  # noqa: E402

from recsys.config import load_settings  # noqa: E402

PORTS = {"bare": 8111, "old": 8112, "new": 8113}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--old", required=True, help="a git revision")
    parser.add_argument("--new", required=True, help="a git revision")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "RECSYS_DATA_DIR": str(args.data), "RECSYS_SOURCE_URL": args.source,
           "RECSYS_LOG_LEVEL": "WARNING"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("RECSYS_DATA_DIR", "RECSYS_SOURCE_URL")})
    sample_ids = request_users(load_settings())
    with tempfile.TemporaryDirectory() as scratch:
        trees = {name: Path(scratch, name) for name in ("old", "new")}
        for name, tree in trees.items():
            rev = getattr(args, name)
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                           capture_output=True)  # fmt: skip
        servers = {"bare": start("bare", bench_app("bare_app", PORTS["bare"]), env)}
        for name, tree in trees.items():
            servers[name] = start(name, [sys.executable, "-m", "recsys", "serve", "--port", str(PORTS[name])],
                                  {**env, "PYTHONPATH": str(tree)}, cwd=tree)  # fmt: skip
        rounds = {name: [] for name in servers}
        try:
            wait_ready(PORTS["old"], "/ready")
            wait_ready(PORTS["new"], "/ready")
            wait_ready(PORTS["bare"], "/post/recommendations/?id=1")
            for _ in range(args.rounds):
                for name in servers:
                    rounds[name].append(wrk(PORTS[name], sample_ids, 10, 32)["rps"])
        finally:
            stop(servers)
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"{platform.machine()}, {os.cpu_count()} cores; old {args.old}, new {args.new}; wrk -c32, "
          f"{args.rounds} rounds of 10 s in turn\n")  # fmt: skip
    print("| server | req/s per round | median | / bare |\n|---|---|---:|---:|")
    bare_median = np.median(rounds["bare"])
    for name, values in rounds.items():
        median = np.median(values)
        print(f"| {name} | {', '.join(f'{v:,.0f}' for v in values)} | {median:,.0f} | {median / bare_median:.3f} |")


if __name__ == "__main__":
    main()
