"""Benchmark: what each family of history tables of the feature store costs to build on an extract.

Builds the daily history tables, the time tables (post windows, user activity) and the co-like fits
(``recsys.collab``) one after the other in one process, timing each; prints the seconds, the rows of
the new tables and the process's peak RSS, as Markdown for docs/benchmarks.md.

    python bench/feature_cost.py /tmp/bench-dynamic/seed-1/extracts/2000-01-01 [--collab-refit-days 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.features import HISTORY_TABLES, FeatureStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extract", type=Path)
    parser.add_argument("--collab-refit-days", type=int, default=1)
    args = parser.parse_args()
    post_ids = pq.read_table(args.extract / "post_text_df.parquet", columns=["post_id"]).column(0).to_numpy()
    # Text components play no part in these tables: two zero columns stand in for them.
    store = FeatureStore(args.extract, post_ids, {"control": np.zeros((len(post_ids), 2), np.float32)},
                         collab_refit_days=args.collab_refit_days)  # fmt: skip
    rebuilds = {
        "daily history tables": (store._build_history, list(HISTORY_TABLES)),
        "time tables": (store._build_time_history, ["post_window_days", "user_activity_days"]),
    }
    print("| tables | seconds | rows |\n|---|---:|---:|")
    for name, (build, tables) in rebuilds.items():
        for table in tables:  # built once by the constructor: timed again from scratch
            store.con.execute(f"DROP TABLE {table}")
        started = time.perf_counter()
        build()
        rows = sum(store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in tables)
        print(f"| {name} | {time.perf_counter() - started:.1f} | {rows:,} |")
    started = time.perf_counter()
    store._build_collab()
    rows = sum(store.con.execute(f"SELECT count(*) FROM collab_{side}").fetchall()[0][0] for side in ("users", "posts"))
    print(f"| co-like fits (refit every {args.collab_refit_days} day(s)) | {time.perf_counter() - started:.1f} "
          f"| {rows:,} |")  # fmt: skip
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
