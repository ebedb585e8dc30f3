"""Benchmark: the whole model pipeline on a preset for several generator seeds.

For each seed: generate into a fresh DuckDB source, extract, prepare, train control, test and the
recipe baseline, evaluate. Prints per-method numbers per seed, their spread over seeds, and the
models' margins over the baselines, as Markdown for docs/benchmarks.md.

    python bench/evaluate_seeds.py --preset demo --seeds 1 2 3 --out /tmp/bench-seeds
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import training  # noqa: E402
from recsys.config import load_settings  # noqa: E402
from recsys.extract import extract  # noqa: E402
from recsys.generate import PRESETS, generate_into  # noqa: E402
from recsys.sources import open_source  # noqa: E402


def run_seed(preset: str, seed: int, out: Path, embedding_cache: Path) -> dict:
    data_dir = out / f"seed-{seed}"
    os.environ["RECSYS_DATA_DIR"] = str(data_dir)
    os.environ["RECSYS_SOURCE_URL"] = f"duckdb:///{data_dir / 'source.duckdb'}"
    settings = load_settings()
    (data_dir / "cache").mkdir(parents=True, exist_ok=True)
    if not (data_dir / "cache" / "embeddings").exists():
        (data_dir / "cache" / "embeddings").symlink_to(embedding_cache)  # texts repeat across runs only by seed
    generate_into(open_source(settings.source_url), PRESETS[preset], seed, True, settings.ground_truth_dir)
    started = time.perf_counter()
    extract_path = extract(settings, dt.date(2000, 1, 1))
    version_dir = training.prepare(settings, extract_path)
    store, _ = training.load_version(version_dir, settings)
    for kind in ("control", "test", "recipe"):
        training.train_model(version_dir, kind, settings, store)
    report = training.evaluate_version(version_dir, settings, store)
    report["pipeline_seconds"] = round(time.perf_counter() - started)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    cache = args.out / "embeddings-cache"
    cache.mkdir(parents=True, exist_ok=True)
    reports = {seed: run_seed(args.preset, seed, args.out, cache) for seed in args.seeds}

    methods = list(next(iter(reports.values()))["methods"])
    print(f"\npreset {args.preset}, seeds {args.seeds}; {platform.machine()}, {os.cpu_count()} cores\n")
    for metric, label in (("replay_hit_rate", "replay HitRate@5"), ("expected_hit_rate", "expected HitRate@5"),
                          ("share_of_oracle", "expected HitRate@5 / oracle's"), ("auc", "AUC")):  # fmt: skip
        print(f"\n{label}\n\n| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | spread |")
        print("|---|" + "---:|" * (len(args.seeds) + 2))
        for method in methods:
            values = []
            for seed in args.seeds:
                value = reports[seed]["methods"][method].get(metric)
                values.append(value["mean"] if isinstance(value, dict) else value)
            if any(v is None for v in values):
                continue
            cells = " | ".join(f"{v:.4f}" for v in values)
            print(f"| {method} | {cells} | {sum(values) / len(values):.4f} | {max(values) - min(values):.4f} |")
    print("\nmargins of replay HitRate@5 per seed (model minus baseline); smallest margin vs the model's spread")
    for model in ("control", "test"):
        spread = [reports[s]["methods"][model]["replay_hit_rate"]["mean"] for s in args.seeds]
        for baseline in ("random", "popular", "recipe"):
            margins = [reports[s]["methods"][model]["replay_hit_rate"]["mean"]
                       - reports[s]["methods"][baseline]["replay_hit_rate"]["mean"] for s in args.seeds]  # fmt: skip
            print(f"- {model} − {baseline}: " + ", ".join(f"{m:+.4f}" for m in margins)
                  + f"; smallest {min(margins):+.4f} vs spread {max(spread) - min(spread):.4f}")  # fmt: skip
    print("\npipeline seconds per seed (extract to evaluation): "
          + ", ".join(str(reports[s]["pipeline_seconds"]) for s in args.seeds))  # fmt: skip


if __name__ == "__main__":
    main()
