"""`make run` on a fresh clone: time to "ready", memory of every process it started, and Ctrl-C.

    python bench/make_run.py --clone /tmp/makerun [--reuse]

Clones the repository's HEAD into --clone (removed first), runs `make run` there, samples the memory
(RSS and PSS, summed over the whole process tree) every 2 seconds, checks the printed sample request,
then sends Ctrl-C (SIGINT) and times how long until every process is gone. Then runs `make run` a
second time (everything exists) and times it again. Prints a JSON summary of each run. With
--reuse, the existing clone is kept and the first run runs the nightly DAG again (RUN_NIGHTLY=1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(processes, RSS bytes, PSS bytes) of root and all its descendants."""
    count = rss = pss = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        count, rss, pss = count + 1, rss + info.rss, pss + getattr(info, "pss", info.rss)
    return count, rss, pss


def as_gb(sample: tuple[int, int, int]) -> dict:
    return {"processes": sample[0], "rss_gb": round(sample[1] / 1e9, 2), "pss_gb": round(sample[2] / 1e9, 2)}


def run_once(clone: Path, env: dict, label: str) -> dict:
    started = time.monotonic()
    make = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    root = psutil.Process(make.pid)
    lines, ready = [], threading.Event()

    def read():
        for line in make.stdout:
            lines.append(line)
            sys.stdout.write(f"[{label}] {line}")
            if "Ctrl-C stops Airflow and the API" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    peak, peak_at = (0, 0, 0), 0.0
    while not ready.is_set():
        if make.poll() is not None:
            raise SystemExit(f"make run exited with {make.returncode} before ready")
        sample = tree_memory(root)
        if sample[2] > peak[2]:
            peak, peak_at = sample, time.monotonic() - started
        time.sleep(2)
    ready_seconds = time.monotonic() - started
    time.sleep(10)  # settle
    steady = tree_memory(root)
    request = re.search(r"curl '([^']+)'", "".join(lines)).group(1)
    answer = httpx.get(request, timeout=30)
    make_pid_group = os.getpgid(make.pid)
    stop_started = time.monotonic()
    os.killpg(make_pid_group, signal.SIGINT)  # what Ctrl-C in the terminal does
    make.wait(timeout=300)
    while any(p.info["cmdline"] and str(clone) in " ".join(p.info["cmdline"]) and p.pid != os.getpid()
              for p in psutil.process_iter(["cmdline"])):  # fmt: skip
        time.sleep(1)
    return {
        "ready_seconds": round(ready_seconds, 1),
        "peak_while_starting": {**as_gb(peak), "at_seconds": round(peak_at)},
        "steady_after_ready": as_gb(steady),
        "sample_request": request,
        "sample_status": answer.status_code,
        "sample_recommendations": len(answer.json().get("recommendations", [])),
        "stop_seconds": round(time.monotonic() - stop_started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clone", type=Path, required=True)
    parser.add_argument("--reuse", action="store_true",
                        help="keep an existing clone (its .venv and data) and run the nightly DAG again")  # fmt: skip
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RECSYS_", "AIRFLOW", "VIRTUAL_ENV"))}
    if not args.reuse:
        shutil.rmtree(args.clone, ignore_errors=True)
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(args.clone)], check=True)
    first = run_once(args.clone, {**env, "RUN_NIGHTLY": "1"} if args.reuse else env, "first")
    print(json.dumps({"first": first}, indent=2), flush=True)
    print(json.dumps({"second": run_once(args.clone, env, "second")}, indent=2), flush=True)


if __name__ == "__main__":
    main()
