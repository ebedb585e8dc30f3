"""Benchmark: the joint taste model's daily fits (``recsys.taste``) on an extract, for one text space.

    python bench/taste_full.py --version /tmp/full/train2/models/<version> --space control

Builds the version's feature store as the nightly tasks do, then times what the store adds for the
taste model (sampling the views, every daily fit, the coefficient tables): wall time, the peak RSS
of the process, and the number of rows and sweeps. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import training  # noqa: E402
from recsys.config import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, required=True, help="a trained version folder (models/<version>)")
    parser.add_argument("--space", default="control", choices=("control", "test"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("RECSYS_DATA_DIR", str(args.version.parents[1]))
    settings = load_settings()
    started = time.perf_counter()
    # As training.load_version, with RECSYS_TASTE_DAY_ROWS from the environment: the version may predate it.
    manifest = training.read_manifest(args.version)
    store = training._feature_store(settings, Path(manifest["extract"]), *training.version_post_vectors(args.version),
                                    manifest["text_clusters"], settings.taste_day_rows,
                                    Path(tempfile.mkdtemp()))  # a folder of its own: fit, never load  # fmt: skip
    store._build_profiles(args.space)
    store._build_clusters(args.space)
    built = time.perf_counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    store._build_taste(args.space)
    seconds = time.perf_counter() - built
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows = {name: store.con.execute(f"SELECT count(*) FROM taste_{args.space}_{name}").fetchone()[0]
            for name in ("post", "city_topic", "city_cluster")}  # fmt: skip
    print(f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print(f"Command: `python bench/taste_full.py --version {args.version} --space {args.space}` "
          f"(RECSYS_TASTE_DAY_ROWS={store.taste_day_rows})\n")  # fmt: skip
    print("| step | wall | peak RSS of the process |")
    print("|---|---:|---:|")
    print(f"| feature store, profiles and clusters (before) | {built - started:.0f} s | {rss_before:.2f} GB |")
    print(f"| taste model: sample, daily fits, tables | {seconds:.0f} s | {rss_after:.2f} GB |")
    print(f"\nCoefficient rows stored (all days): {', '.join(f'{k} {v:,}' for k, v in rows.items())}")


if __name__ == "__main__":
    main()
