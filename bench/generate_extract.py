"""Benchmark: generate a preset into DuckDB and into PostgreSQL, then extract each to Parquet.

Each step runs as its own `python -m recsys` process under /usr/bin/time, so wall time and peak RSS
are the process's own. PostgreSQL is a throwaway server with default settings (tests/pg_server.py).

    python bench/generate_extract.py --preset full --out /tmp/bench-full

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pg_server import server_bindir, temporary_postgres  # noqa: E402


def timed(args: list[str], env: dict) -> dict:
    """Run `python -m recsys ARGS`; wall seconds and peak RSS from GNU time."""
    stats = Path(env["RECSYS_DATA_DIR"]) / "time.txt"
    stats.parent.mkdir(parents=True, exist_ok=True)
    command = ["/usr/bin/time", "-o", str(stats), "-f", "%e %M", sys.executable, "-m", "recsys", *args]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    wall, rss_kb = stats.read_text().split()[-2:]
    return {"seconds": float(wall), "peak_rss_gb": int(rss_kb) / 1024**2, "stdout": result.stdout.strip()}


def run_store(name: str, url: str, preset: str, seed: int, out: Path) -> list[dict]:
    env = {"RECSYS_SOURCE_URL": url, "RECSYS_DATA_DIR": str(out / name), "RECSYS_LOG_LEVEL": "WARNING"}
    generated = timed(["generate", "--preset", preset, "--seed", str(seed), "--replace"], env)
    rows = json.loads(generated["stdout"])["feed_rows"]
    extracted = timed(["extract", "--date", "2000-01-01"], env)
    manifest = json.loads((Path(extracted["stdout"]) / "manifest.json").read_text())
    assert manifest["tables"]["feed_data"]["rows"] == rows
    return [
        {"step": f"generate into {name}", "rows": rows, **generated},
        {"step": f"extract from {name}", "rows": rows, "checksum": manifest["tables"]["feed_data"]["checksum"],
         **extracted},  # fmt: skip
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="scratch folder for sources and extracts")
    args = parser.parse_args()
    results = run_store("duckdb", f"duckdb:///{args.out / 'source.duckdb'}", args.preset, args.seed, args.out)
    bindir = server_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    with temporary_postgres(bindir) as pg:
        url = f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/postgres"
        results += run_store("postgresql", url, args.preset, args.seed, args.out)

    print(f"\npreset {args.preset}, seed {args.seed}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}\n")  # fmt: skip
    print("| step | rows | wall time | rows/s | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['step']} | {r['rows']:,} | {r['seconds']:.0f} s | {r['rows'] / r['seconds']:,.0f} "
              f"| {r['peak_rss_gb']:.2f} GB |")  # fmt: skip
    checksums = {r["checksum"] for r in results if "checksum" in r}
    print(f"\nfeed_data checksums equal across stores: {len(checksums) == 1}")


if __name__ == "__main__":
    main()
