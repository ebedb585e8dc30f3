"""Benchmark: the model steps on an existing extract, each step its own process under GNU time.

    python bench/train_full.py --extract /tmp/bench-full/duckdb/extracts/2000-01-01 --out /tmp/bench-train
    python bench/train_full.py --evaluate-only /tmp/bench-train/models/<version>   # the last step again

Steps: embedding all posts with a cold cache, then warm; prepare; train control, test, recipe;
evaluate. Prints wall time and peak RSS per step as Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EMBED = """
import pyarrow.parquet as pq, sys
from recsys.config import load_settings
from recsys.text_features import sentence_embeddings
s = load_settings()
texts = pq.read_table(sys.argv[1] + '/post_text_df.parquet').column('text').to_pylist()
print(sentence_embeddings(texts, s.embedding_model, s.data_dir / 'cache' / 'embeddings').shape)
"""
PREPARE = """
import sys
from pathlib import Path
from recsys import training
from recsys.config import load_settings
print(training.prepare(load_settings(), Path(sys.argv[1])))
"""
TRAIN = """
import sys
from pathlib import Path
from recsys import training
from recsys.config import load_settings
print(training.train_model(Path(sys.argv[1]), sys.argv[2], load_settings())["seconds"])
"""
EVALUATE = """
import sys
from pathlib import Path
from recsys import training
from recsys.config import load_settings
from recsys.evaluate import format_report
print(format_report(training.evaluate_version(Path(sys.argv[1]), load_settings())))
"""


def timed(step: str, code: str, *args: str, env: dict) -> dict:
    stats = Path(env["RECSYS_DATA_DIR"]) / "time.txt"
    command = ["/usr/bin/time", "-o", str(stats), "-f", "%e %M", sys.executable, "-c", code, *args]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{step} failed:\n{result.stderr[-3000:]}")
    wall, rss_kb = stats.read_text().split()[-2:]
    print(f"{step}: {wall} s, {int(rss_kb) / 1024**2:.2f} GB", file=sys.stderr)
    return {"step": step, "seconds": float(wall), "rss": int(rss_kb) / 1024**2, "stdout": result.stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ground-truth", type=Path, help="the generator's ground truth for expected HitRate")
    parser.add_argument("--embedding-cache", type=Path, help="start from this cache and skip the embedding timings")
    parser.add_argument("--evaluate-only", type=Path, help="only evaluate this trained version (a models/ folder)")
    args = parser.parse_args()
    if args.evaluate_only:
        version_dir = args.evaluate_only.resolve()
        env = {"RECSYS_DATA_DIR": str(version_dir.parents[1]), "PYTHONPATH": str(REPO)}
        evaluated = timed("evaluate", EVALUATE, str(version_dir), env=env)
        print(f"| evaluate | {evaluated['seconds']:.0f} s | {evaluated['rss']:.2f} GB |")
        print("\n```\n" + evaluated["stdout"] + "\n```")
        return
    if args.extract is None or args.out is None:
        parser.error("--extract and --out are needed, unless --evaluate-only")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    if args.ground_truth:
        shutil.copytree(args.ground_truth, args.out / "ground_truth")
    env = {"RECSYS_DATA_DIR": str(args.out), "PYTHONPATH": str(REPO)}
    extract = str(args.extract.resolve())
    if args.embedding_cache:
        shutil.copytree(args.embedding_cache, args.out / "cache")
        rows = []
    else:
        rows = [timed("embed all posts, cold cache", EMBED, extract, env=env),
                timed("embed all posts, warm cache", EMBED, extract, env=env)]  # fmt: skip
    prepared = timed("prepare (text vectors, split, samples)", PREPARE, extract, env=env)
    rows.append(prepared)
    version_dir = prepared["stdout"].splitlines()[-1]
    for kind in ("control", "test", "recipe"):
        rows.append(timed(f"train {kind}", TRAIN, version_dir, kind, env=env))
    evaluated = timed("evaluate", EVALUATE, version_dir, env=env)
    rows.append(evaluated)
    print(f"\n{platform.machine()}, {os.cpu_count()} cores; extract {args.extract}\n")
    print("| step | wall time | peak RSS |\n|---|---:|---:|")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']:.0f} s | {row['rss']:.2f} GB |")
    print("\n```\n" + evaluated["stdout"] + "\n```")


if __name__ == "__main__":
    main()
