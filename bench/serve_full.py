"""Benchmark: precompute and the lookup API on a data dir with published models, side by side in one run.

    python bench/serve_full.py --data /tmp/full/data --source duckdb:////tmp/full/source.duckdb

1. ``recsys precompute`` under GNU time: wall time and peak RSS.
2. On the published snapshot, with the generator's ground truth: the expected HitRate@5 cost of the
   candidate stage (all posts against RECSYS_CANDIDATES), and how much the hour of day changes the
   models' top 5 (the time-bucket decision).
3. Three servers, one uvicorn worker each: a bare Starlette endpoint answering a constant body (the
   ceiling), ``recsys serve`` (precomputed lookups), and an on-the-fly service scoring all posts
   per request as the original did. wrk measures each one's maximum throughput; a Python open-loop
   client sends 1,000 req/s for 60 s to the lookup API (latency from the scheduled send time, so a
   stall counts); fresh users (added to the source, absent from the snapshot) are timed one by one.
   Beside each phase, the share of CPU time the hypervisor stole from this VM (``st`` in top): a
   stolen vCPU stalls client and server alike, so the open loop's tail is also given over the
   seconds in which the host stole less than 5%.
Needs ``wrk`` (apt-get install wrk). Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys import models, precompute, snapshot  # noqa: E402
from recsys.config import load_settings  # noqa: E402
from recsys.files import read_json  # noqa: E402
from recsys.truth import GroundTruth  # noqa: E402

PORTS = {"bare": 8101, "lookup": 8102, "onthefly": 8103}
STEAL_BANDS = {"< 5%": (0.0, 0.05), "5..20%": (0.05, 0.2), ">= 20%": (0.2, np.inf)}  # the host's steal in a second
QUIET_BAND = "< 5%"  # the seconds the open loop's quiet tail is taken over


def run_precompute(env: dict) -> dict:
    stats = Path(tempfile.mkstemp()[1])
    command = ["/usr/bin/time", "-o", str(stats), "-f", "%e %M", sys.executable, "-m", "recsys", "precompute"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"precompute failed:\n{result.stderr[-3000:]}")
    wall, rss_kb = stats.read_text().split()[-2:]
    return {"seconds": float(wall), "rss_gb": int(rss_kb) / 1024**2, "log": result.stderr}


def expected_hit_rate(truth, user_ids, post_ids, when) -> float:
    """Mean over users of 1 - prod(1 - p) over their served posts (rows: users, columns: posts)."""
    p = truth.like_probability(np.repeat(user_ids, post_ids.shape[1]), post_ids.ravel(),
                               np.full(post_ids.size, np.datetime64(when, "us")))  # fmt: skip
    return float((1 - np.prod(1 - p.reshape(post_ids.shape), axis=1)).mean())


def top_posts(ranked: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    return ranked[ranked["rank"] < k].sort_values(["user_id", "rank"])


def candidate_and_bucket_study(settings, users_per_group: int, bucket_users: int) -> dict:
    folder = snapshot.current_dir(settings)
    plan = read_json(folder / snapshot.PLAN)
    truth = GroundTruth.load(settings.ground_truth_dir)
    users = pd.read_parquet(folder / "users.parquet")
    liked = pd.read_parquet(folder / "liked.parquet")
    as_of = pd.Timestamp(plan["as_of"])
    result = {"candidates": plan["candidates"], "groups": {}}
    for group, kind in plan["group_models"].items():
        model = models.load(folder / "models" / f"{kind}.cbm")
        serving = precompute.load_serving(folder, models.TEXT_SPACE[kind])
        sample = users[users["group"] == group].sample(users_per_group, random_state=1)
        sample_liked = liked[liked["user_id"].isin(sample["user_id"])]
        when = as_of + pd.Timedelta(hours=12)
        rows = {}
        for label, count in (("all posts", 0), ("candidates", plan["candidates"])):
            started = time.perf_counter()
            ranked = top_posts(precompute.rank_users(model, kind, serving, sample, sample_liked, as_of.date(),
                                                     5, 1, count))  # fmt: skip
            served = ranked["post_id"].to_numpy().reshape(-1, 5)
            rows[label] = {"expected": expected_hit_rate(truth, ranked["user_id"].to_numpy()[::5], served, when),
                           "seconds": time.perf_counter() - started}  # fmt: skip
        # Time buckets: the top 5 at each hour against the top 5 at noon, over all posts.
        few = sample.head(bucket_users).reset_index(drop=True)
        n_posts = len(serving.posts)
        frame = serving.features(few, np.broadcast_to(np.arange(n_posts), (len(few), n_posts)), when)
        tops = {}
        for hour in range(24):
            frame["hour"] = float(hour)
            scores = models.predict(model, kind, frame).reshape(len(few), n_posts)
            tops[hour] = np.sort(np.argsort(-scores, axis=1)[:, :5], axis=1)
        changed = [float((tops[h] != tops[12]).any(axis=1).mean()) for h in range(24)]
        post_ids = serving.posts["post_id"].to_numpy()
        user_ids = few["user_id"].to_numpy()
        # What serving noon's list at every hour costs, in expected HitRate at that hour.
        loss = [expected_hit_rate(truth, user_ids, post_ids[tops[h]], as_of + pd.Timedelta(hours=h))
                - expected_hit_rate(truth, user_ids, post_ids[tops[12]], as_of + pd.Timedelta(hours=h))
                for h in range(24)]  # fmt: skip
        result["groups"][group] = {"rows": rows, "top5_changed_vs_noon": changed, "hour_list_gain": loss,
                                   "users": users_per_group, "bucket_users": bucket_users}  # fmt: skip
    return result


# --- servers and load ------------------------------------------------------------------------------
def start(name: str, args: list[str], env: dict, cwd: Path = REPO) -> subprocess.Popen:
    """A server in its own session; `python -m` imports from cwd first, so cwd picks the code."""
    log = open(Path(tempfile.gettempdir()) / f"bench-{name}.log", "w")  # noqa: SIM115 - lives as long as the server
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def bench_app(module: str, port: int) -> list[str]:
    """The command serving one of bench/'s apps (bare_app, onthefly_app) with uvicorn, one worker."""
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO / "bench"), f"{module}:app", "--port", str(port),
            "--log-level", "warning", "--no-access-log"]  # fmt: skip


def stop(servers: dict[str, subprocess.Popen]) -> None:
    """Ctrl-C to every server's session, then wait for each to exit."""
    for server in servers.values():
        os.killpg(server.pid, 2)
    for server in servers.values():
        server.wait(timeout=60)


def request_users(settings, count: int = 5000) -> list[int]:
    """The users the load generators ask for: a fixed sample of the current snapshot's users."""
    users = pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")["user_id"]
    return users.sample(count, random_state=3).tolist()


def wait_ready(port: int, path: str, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} not ready after {timeout} s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split()) / 1024


def wrk(port: int, user_ids: list[int], seconds: int, connections: int) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    ids = ",".join(str(u) for u in user_ids)
    script.write_text(f"local ids = {{{ids}}}\nrequest = function()\n"
                      f"  return wrk.format('GET', '/post/recommendations/?id=' .. ids[math.random(#ids)] .. "
                      f"'&time=2021-12-30T12:00:00')\nend\n")  # fmt: skip
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rate, "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else "none", "raw": out}  # fmt: skip


class StealMeter:
    """Samples /proc/stat every 50 ms in a thread: the CPU time the hypervisor gave to other guests
    ("steal"), as a share of this VM's CPU time, over a phase and per second of it."""

    def __init__(self):
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, steal ticks, all ticks)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            with open("/proc/stat") as stat:
                ticks = [int(x) for x in stat.readline().split()[1:9]]  # user .. steal, without guest time
            self.samples.append((time.perf_counter(), ticks[7], sum(ticks)))
            self._done.wait(0.05)

    def __enter__(self) -> StealMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def share(self, start: float = -np.inf, end: float = np.inf) -> float:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / max(inside[-1][2] - inside[0][2], 1)


async def open_loop(port: int, user_ids: list[int], rate: float, seconds: float, connections: int) -> dict:
    """Requests sent on a fixed schedule over keep-alive connections; latency from the scheduled time.

    Also the tail over the quiet seconds: those in which the hypervisor stole < 5% of the CPU time."""
    scheduled_at, latencies, statuses = [], [], []
    interval = connections / rate
    start = time.perf_counter() + 0.5

    async def connection(k: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rng = random.Random(k)
        i = 0
        while True:
            scheduled = start + (k / connections) * interval + i * interval
            if scheduled > start + seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = user_ids[rng.randrange(len(user_ids))]
            writer.write(f"GET /post/recommendations/?id={user_id}&time=2021-12-30T12:00:00 HTTP/1.1\r\n"
                         f"Host: bench\r\n\r\n".encode())  # fmt: skip
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            await reader.readexactly(length)
            scheduled_at.append(scheduled)
            latencies.append(time.perf_counter() - scheduled)
            statuses.append(int(head[9:12]))
            i += 1
        writer.close()

    with StealMeter() as meter:
        await asyncio.gather(*(connection(k) for k in range(connections)))
    lat = np.array(latencies) * 1000
    second = np.floor(np.array(scheduled_at) - start).astype(int)
    steal = np.array([meter.share(start + s, start + s + 1) for s in range(int(np.ceil(seconds)))])
    # Requests over 10 ms, by how much the host stole in their second; the quiet band's tail too.
    by_steal, requests_in = {}, {}
    for band, (low, high) in STEAL_BANDS.items():
        seconds_in_band = np.flatnonzero((steal >= low) & (steal < high))
        inside = requests_in[band] = np.isin(second, seconds_in_band)
        by_steal[band] = {"seconds": len(seconds_in_band), "requests": int(inside.sum()),
                          "slow": int((lat[inside] > 10).sum())}  # fmt: skip
    quiet = requests_in[QUIET_BAND]
    return {"requests": len(lat), "rate": len(lat) / seconds, "errors": sum(s != 200 for s in statuses),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "steal": meter.share(start, start + seconds),
            "quiet_seconds": by_steal[QUIET_BAND]["seconds"],
            "quiet_p99_ms": float(np.percentile(lat[quiet], 99)) if quiet.any() else float("nan"),
            "slow_by_steal": by_steal}  # fmt: skip


def fresh_users(source_path: Path, count: int) -> list[int]:
    """Add `count` users to the source (copies of existing users' attributes under new ids)."""
    import duckdb

    with duckdb.connect(str(source_path)) as con:
        (top,) = con.execute("SELECT max(user_id) FROM user_data").fetchall()[0]
        con.execute(f"""
            INSERT INTO user_data SELECT user_id + {top}, gender, age, country, city, exp_group, os, source
            FROM user_data USING SAMPLE {count} ROWS (reservoir, 7)""")
        return [int(u) for (u,) in con.execute(f"SELECT user_id FROM user_data WHERE user_id > {top}").fetchall()]


def time_fresh(port: int, user_ids: list[int]) -> dict:
    latencies = []
    for user_id in user_ids:
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/post/recommendations/?id={user_id}") as response:
            assert response.status == 200
            response.read()
        latencies.append((time.perf_counter() - started) * 1000)
    lat = np.array(latencies)  # every request: the fresh-user models are loaded with the snapshot
    return {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--skip-precompute", action="store_true")
    parser.add_argument("--skip-studies", action="store_true", help="skip the candidate and time-bucket studies")
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    env = {**os.environ, "RECSYS_DATA_DIR": str(args.data), "RECSYS_SOURCE_URL": args.source,
           "PYTHONPATH": str(REPO), "RECSYS_LOG_LEVEL": "WARNING"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("RECSYS_DATA_DIR", "RECSYS_SOURCE_URL")})
    settings = load_settings()
    print(f"{platform.machine()}, {os.cpu_count()} cores; data {args.data}\n")

    if not args.skip_precompute:
        pre = run_precompute(env)
        print(f"precompute: {pre['seconds']:.0f} s, peak RSS {pre['rss_gb']:.2f} GB")
    manifest = snapshot.verify(snapshot.current_dir(settings), checksums=False)
    print(f"snapshot {manifest['snapshot']}: {manifest['users']:,} users, "
          f"{sum(manifest['recommendation_rows'].values()):,} rows, candidates {manifest['candidates']}")  # fmt: skip

    study = {"groups": {}} if args.skip_studies else candidate_and_bucket_study(settings, 1000, 200)
    print("\n| group | expected HR@5, all posts | with candidates | cost | time all / candidates |")
    print("|---|---:|---:|---:|---:|")
    for group, g in study["groups"].items():
        full, cand = g["rows"]["all posts"], g["rows"]["candidates"]
        cost = full["expected"] - cand["expected"]
        print(f"| {group} | {full['expected']:.4f} | {cand['expected']:.4f} | {cost:+.4f} "
              f"| {full['seconds']:.1f} s / {cand['seconds']:.1f} s |")  # fmt: skip
    print("\nshare of users whose top 5 at hour h differs from noon's; expected HR@5 gain of hour h's own list")
    for group, g in study["groups"].items():
        changed, gain = np.array(g["top5_changed_vs_noon"]), np.array(g["hour_list_gain"])
        print(f"- {group}: changed mean {changed.mean():.3f}, max {changed.max():.3f} (hour {changed.argmax()}); "
              f"gain mean {gain.mean():+.5f}, max {gain.max():+.5f}")  # fmt: skip

    source_path = Path(args.source.removeprefix("duckdb:///"))
    fresh = fresh_users(source_path, 205)
    sample_ids = request_users(settings)
    servers = {
        "bare": start("bare", bench_app("bare_app", PORTS["bare"]), env),
        "lookup": start("lookup", [sys.executable, "-m", "recsys", "serve", "--port", str(PORTS["lookup"])],
                        {**env, "RECSYS_LOG_LEVEL": "INFO"}),
        "onthefly": start("onthefly", bench_app("onthefly_app", PORTS["onthefly"]), env),
    }  # fmt: skip
    try:
        ready_s = wait_ready(PORTS["lookup"], "/ready")
        wait_ready(PORTS["bare"], "/post/recommendations/?id=1")
        wait_ready(PORTS["onthefly"], f"/post/recommendations/?id={sample_ids[0]}")
        load_log = Path(tempfile.gettempdir(), "bench-lookup.log").read_text()
        rss_loaded = rss_mb(servers["lookup"].pid)
        print(f"\nAPI: ready {ready_s:.1f} s after start; RSS after load {rss_loaded:.0f} MB")
        # Alternating rounds, medians: the host's speed drifts between one server's run and the next.
        connections = {"bare": 32, "lookup": 32, "onthefly": 4}
        rounds = {name: [] for name in connections}
        with StealMeter() as wrk_steal:
            for _ in range(3):
                for name in connections:
                    rounds[name].append(wrk(PORTS[name], sample_ids, 10, connections[name]))
        throughput = {name: {"rps": float(np.median([r["rps"] for r in runs])),
                             "non_2xx": sum(r["non_2xx"] for r in runs),
                             "socket_errors": "; ".join(sorted({r["socket_errors"] for r in runs}))}
                      for name, runs in rounds.items()}  # fmt: skip
        print("\n| server (1 worker) | req/s per round (wrk, 3 x 10 s) | median | non-2xx | socket errors |")
        print("|---|---|---:|---:|---|")
        for name, t in throughput.items():
            per_round = ", ".join(f"{r['rps']:,.0f}" for r in rounds[name])
            print(f"| {name} | {per_round} | {t['rps']:,.0f} | {t['non_2xx']} | {t['socket_errors']} |")
        print(f"\nlookup / bare: {throughput['lookup']['rps'] / throughput['bare']['rps']:.2f}; "
              f"lookup / on-the-fly: {throughput['lookup']['rps'] / throughput['onthefly']['rps']:.0f}x; "
              f"host steal {wrk_steal.share():.1%}")  # fmt: skip
        # uvloop (uvicorn's own loop) keeps the client's share of the two cores small.
        steady = uvloop.run(open_loop(PORTS["lookup"], sample_ids, 1000, args.seconds, 50))
        print(f"\nopen loop 1,000 req/s for {args.seconds} s: {steady['requests']:,} requests "
              f"({steady['rate']:.0f}/s), "
              f"{steady['errors']} errors, p50 {steady['p50_ms']:.2f} ms, p99 {steady['p99_ms']:.2f} ms, "
              f"max {steady['max_ms']:.1f} ms; host steal {steady['steal']:.1%}, over the "
              f"{steady['quiet_seconds']} seconds with steal < 5%: p99 {steady['quiet_p99_ms']:.2f} ms")  # fmt: skip
        print("requests over 10 ms, by the host's steal in their second: " + "; ".join(
            f"{band}: {b['slow']:,} of {b['requests']:,} ({b['seconds']} s)"
            for band, b in steady["slow_by_steal"].items()))  # fmt: skip
        with StealMeter() as fresh_steal:
            fresh_timing = time_fresh(PORTS["lookup"], fresh)
        print(f"fresh users ({fresh_timing['requests']} one by one): p50 {fresh_timing['p50_ms']:.1f} ms, "
              f"p99 {fresh_timing['p99_ms']:.1f} ms; host steal {fresh_steal.share():.1%}")  # fmt: skip
        print(f"API RSS at the end: {rss_mb(servers['lookup'].pid):.0f} MB")
        loaded = re.search(r"loaded snapshot .* in ([\d.]+) s", load_log)
        if loaded:
            print(f"snapshot load (verify checksums + DuckDB into arrays): {loaded.group(1)} s")
    finally:
        stop(servers)


if __name__ == "__main__":
    main()
