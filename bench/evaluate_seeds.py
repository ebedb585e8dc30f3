"""Benchmark: the whole model pipeline on a preset and world for several generator seeds.

For each seed: generate into a fresh DuckDB source, extract, prepare, train control and test (and the
recipe with --with-recipe), evaluate. Prints per-method numbers per seed, their spread over seeds, and the
models' margins over the best baseline of each seed on the deciding served HitRate@5, as Markdown
for docs/benchmarks.md.

    python bench/evaluate_seeds.py --preset demo --world dynamic --seeds 1 2 3 --out /tmp/bench-seeds
    python bench/evaluate_seeds.py --seeds 1 2 3 --out /tmp/bench-seeds --from-runs   # print those runs again

Each seed's gate decisions (``training.decide_serving`` on its served hits) follow the tables.
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

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import rankers, training  # noqa: E402
from recsys.config import load_settings  # noqa: E402
from recsys.extract import extract  # noqa: E402
from recsys.files import read_json  # noqa: E402
from recsys.generate import PRESETS, generate_into  # noqa: E402
from recsys.sources import open_source  # noqa: E402


def run_seed(preset: str, world: str, seed: int, out: Path, embedding_cache: Path, kinds: tuple[str, ...]) -> dict:
    data_dir = out / f"seed-{seed}"
    os.environ["RECSYS_DATA_DIR"] = str(data_dir)
    os.environ["RECSYS_SOURCE_URL"] = f"duckdb:///{data_dir / 'source.duckdb'}"
    settings = load_settings()
    (data_dir / "cache").mkdir(parents=True, exist_ok=True)
    if not (data_dir / "cache" / "embeddings").exists():
        (data_dir / "cache" / "embeddings").symlink_to(embedding_cache)  # texts repeat across runs only by seed
    generate_into(open_source(settings.source_url), PRESETS[preset], seed, True, settings.ground_truth_dir,
                  world=world)
    started = time.perf_counter()
    extract_path = extract(settings, dt.date(2000, 1, 1))
    version_dir = training.prepare(settings, extract_path)
    store, _ = training.load_version(version_dir, settings)
    for kind in kinds:
        training.train_model(version_dir, kind, settings, store)
    report = training.evaluate_version(version_dir, settings, store)
    report["pipeline_seconds"] = round(time.perf_counter() - started)
    return report | {"version_dir": str(version_dir)}


def earlier_run(out: Path, seed: int) -> dict:
    """The evaluation report of the newest version of an earlier run of a seed."""
    version_dir = sorted((out / f"seed-{seed}" / "models").iterdir())[-1]
    return read_json(version_dir / "evaluation.json") | {"version_dir": str(version_dir)}


def gate_decisions(report: dict) -> list[str]:
    """The gate's sentences for a seed's version, as the nightly run decides them."""
    version_dir = Path(report["version_dir"])
    trained = {kind for kind in ("control", "test") if (version_dir / f"{kind}.cbm").exists()}
    decisions = training.decide_serving(pd.read_parquet(version_dir / training.SERVED_HITS), trained, load_settings())
    lines = []
    for decision in decisions["kinds"].values():
        lines.append(decision["reason"])
        if decision["fresh"] is not None:
            lines.append(f"   fresh: {decision['fresh']['reason']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--world", default="static", choices=("static", "dynamic"))
    parser.add_argument("--with-recipe", action="store_true", help="also train the original's recipe (a reference)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--from-runs", action="store_true", help="print the runs already in --out, run nothing")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    cache = args.out / "embeddings-cache"
    cache.mkdir(parents=True, exist_ok=True)
    kinds = ("control", "test", "recipe") if args.with_recipe else ("control", "test")
    if args.from_runs:
        reports = {seed: earlier_run(args.out, seed) for seed in args.seeds}
    else:
        reports = {seed: run_seed(args.preset, args.world, seed, args.out, cache, kinds) for seed in args.seeds}

    methods = list(next(iter(reports.values()))["methods"])
    print(f"\npreset {args.preset}, world {args.world}, seeds {args.seeds}; {platform.machine()}, "
          f"{os.cpu_count()} cores\n")
    for metric, label in (("served_hit_rate", "served HitRate@5"),
                          ("served_hit_rate_fresh", "served HitRate@5, fresh users"),
                          ("expected_hit_rate", "expected HitRate@5"),
                          ("share_of_oracle", "expected HitRate@5 / oracle's"), ("replay_hit_rate", "replay HitRate@5"),
                          ("auc", "AUC")):  # fmt: skip
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
    print("\nmargins of served HitRate@5 per seed over that seed's best baseline; smallest margin vs the spread of "
          "the margin over seeds")
    for model in ("control", "test"):
        margins, best = [], []
        for seed in args.seeds:
            methods = reports[seed]["methods"]
            baseline = max(rankers.BASELINES, key=lambda m: methods[m]["served_hit_rate"]["mean"])
            best.append(baseline)
            margins.append(methods[model]["served_hit_rate"]["mean"] - methods[baseline]["served_hit_rate"]["mean"])
        print(f"- {model} − best baseline ({', '.join(best)}): " + ", ".join(f"{m:+.4f}" for m in margins)
              + f"; smallest {min(margins):+.4f} vs spread {max(margins) - min(margins):.4f}")  # fmt: skip
    for seed in args.seeds:
        served = reports[seed]["served"]
        print(f"seed {seed}: test {reports[seed]['split']['test']}, served users {served['users']} "
              f"({served['fresh_users']} fresh)")
    print("\nGate decisions:\n\n```")
    for seed in args.seeds:
        for line in gate_decisions(reports[seed]):
            print(line if line.startswith(" ") else f"seed-{seed} {line}")
    print("```")
    if not args.from_runs:
        print("\npipeline seconds per seed (extract to evaluation): "
              + ", ".join(str(reports[s]["pipeline_seconds"]) for s in args.seeds))  # fmt: skip


if __name__ == "__main__":
    main()
