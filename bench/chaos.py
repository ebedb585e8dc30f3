"""Benchmark: the serving path under chaos (issue 17).

    HF_HUB_OFFLINE=1 RECSYS_SOURCE_URL=duckdb:////tmp/chaos/source.duckdb \\
        .venv/bin/python bench/chaos.py --data-dir /tmp/chaos --minutes 10 --rate 200

Needs a data dir with a published snapshot (`recsys generate --preset demo`, `recsys pipeline`).
Starts `recsys serve` and sends an open loop of lookups (sent on schedule whatever the latency, at
most --in-flight at once; latency counts from the scheduled time, so a stall counts) while, one
after the other and not before a fixed share of the run:

1. (10%) `recsys precompute` publishes a new snapshot;
2. (35%) a corrupt snapshot is pointed to: a copy of the new one under a newer id, one Parquet
   shard truncated and its checksum recomputed in the manifest, so only loading can tell;
3. (50%) `recsys rollback --to` the snapshot served at the start;
4. (70%) the API is SIGKILLed and started again.

At the end the API is stopped cleanly (SIGINT) and the exposure rows it wrote are matched against
the 200 answers by request id. Prints Markdown: requests, errors by kind and latency per phase,
exposures lost, the API's RSS (sampled every second) per minute, and the issue's three lines.
The corrupt copy is removed at the end, so the data dir can serve another run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
import numpy as np
import psutil
import pyarrow.parquet as pq
import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recsys.files import read_json, sha256, write_atomically, write_json  # noqa: E402
from recsys.snapshot import CURRENT, MANIFEST, STAGING_PREFIX, shard_file  # noqa: E402

# When each event may start, as a share of the run; each also waits for the one before it.
EVENT_SHARES = {"precompute": 0.10, "corrupt": 0.35, "rollback": 0.50, "kill": 0.70}
# A leak shows as a steady climb between snapshot swaps; within ±1 MB/min (0.3%/min of the demo API's
# ~340 MB) we call it flat.
RSS_FLAT_MB_PER_MINUTE = 1.0
REQUEST_TIMEOUT = 10.0  # seconds; longer than any stall seen on this host, shorter than the run


# --- the API process ---------------------------------------------------------------------------------
class Api:
    """`recsys serve` in its own session, logging to the data dir; SIGKILL and start again."""

    def __init__(self, port: int, env: dict, log_path: Path):
        self.port, self.env, self.log_path = port, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("a")  # noqa: SIM115 - lives as long as the server
        command = [sys.executable, "-m", "recsys", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """Ctrl-C, as uvicorn expects for a clean shutdown (the exposure log is closed)."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=120)

    def ready(self) -> dict | None:
        """The API's /ready answer, or None while it does not answer 200."""
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=2)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def wait_until(self, condition, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.ready()
            if state is not None and condition(state):
                return state
            time.sleep(0.25)
        raise SystemExit(f"the API did not reach the expected state within {timeout:.0f} s: {self.ready()}")


class RssSampler:
    """The API's resident memory once a second, in a thread: (seconds since start, pid, MB)."""

    def __init__(self, api: Api, clock):
        self.api, self.clock = api, clock
        self.samples: list[tuple[float, int, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(1.0):
            pid = self.api.process.pid
            with contextlib.suppress(psutil.NoSuchProcess):  # between SIGKILL and the new start
                self.samples.append((self.clock(), pid, psutil.Process(pid).memory_info().rss / 2**20))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


# --- the events --------------------------------------------------------------------------------------
@dataclass
class Timeline:
    """Phases by start time (seconds since the load started) and notes on what happened when."""

    started: float = field(default_factory=time.perf_counter)
    phases: list[tuple[float, str]] = field(default_factory=lambda: [(0.0, "steady")])
    notes: list[str] = field(default_factory=list)
    restart_window: tuple[float, float] = (np.inf, np.inf)

    def now(self) -> float:
        return time.perf_counter() - self.started

    def enter(self, phase: str) -> float:
        at = self.now()
        self.phases.append((at, phase))
        return at

    def note(self, text: str) -> None:
        self.notes.append(f"{self.now():.0f} s: {text}")

    def phase_at(self, seconds: np.ndarray) -> np.ndarray:
        starts = np.array([start for start, _ in self.phases])
        names = np.array([name for _, name in self.phases])
        return names[np.searchsorted(starts, seconds, side="right") - 1]


def run_command(args: list[str], env: dict, log_path: Path) -> None:
    with log_path.open("a") as log:
        result = subprocess.run(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} exited with {result.returncode}; see {log_path}")


def publish_corrupt_copy(snapshots_dir: Path, source_id: str) -> str:
    """A copy of a published snapshot under a newer id with one recommendations shard cut in half,
    its checksum recomputed: verification passes, only reading the Parquet fails. CURRENT names it."""
    corrupt_id = f"{source_id[:10]}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    staging = snapshots_dir / f"{STAGING_PREFIX}{corrupt_id}"
    shutil.copytree(snapshots_dir / source_id, staging)
    manifest = read_json(staging / MANIFEST)
    group = manifest["groups"][0]
    damaged = shard_file(staging, group, 0)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    manifest["snapshot"] = corrupt_id
    manifest["checksums"][str(damaged.relative_to(staging))] = sha256(damaged)
    write_json(staging / MANIFEST, manifest)
    staging.rename(snapshots_dir / corrupt_id)
    write_atomically(snapshots_dir / CURRENT, corrupt_id + "\n")  # as snapshot.publish does
    return corrupt_id


def chaos(api: Api, timeline: Timeline, seconds: float, env: dict, data_dir: Path, base_id: str) -> str:
    """The four events in order, each not before its share of the run. Returns the corrupt id."""
    snapshots_dir, log_path = data_dir / "snapshots", data_dir / "logs" / "chaos-commands.log"

    def wait_for(event: str) -> None:
        time.sleep(max(0.0, EVENT_SHARES[event] * seconds - timeline.now()))

    wait_for("precompute")
    timeline.enter("precompute")
    run_command([sys.executable, "-m", "recsys", "precompute"], env, log_path)
    new_id = (snapshots_dir / CURRENT).read_text().strip()
    timeline.enter("new snapshot")
    timeline.note(f"precompute published {new_id}")
    api.wait_until(lambda state: state["snapshot"] == new_id)
    timeline.note(f"the API serves {new_id}")

    wait_for("corrupt")
    corrupt_id = publish_corrupt_copy(snapshots_dir, new_id)
    timeline.enter("corrupt current")
    timeline.note(f"CURRENT names the corrupt copy {corrupt_id}")
    state = api.wait_until(lambda state: corrupt_id in (state["last_error"] or ""))
    timeline.note(f"the API refused it and serves {state['snapshot']}: {state['last_error']}")

    wait_for("rollback")
    timeline.enter("rollback")
    run_command([sys.executable, "-m", "recsys", "rollback", "--to", base_id], env, log_path)
    timeline.note(f"rolled back to {base_id}")
    api.wait_until(lambda state: state["snapshot"] == base_id)
    timeline.note(f"the API serves {base_id}")

    wait_for("kill")
    killed_at = timeline.enter("SIGKILL, restart")
    api.kill()
    api.start()
    state = api.wait_until(lambda state: True)
    timeline.restart_window = (killed_at, timeline.enter("after restart"))
    timeline.note(f"SIGKILL at {killed_at:.0f} s; started again, ready after {timeline.now() - killed_at:.1f} s, "
                  f"serving {state['snapshot']}")  # fmt: skip
    return corrupt_id


# --- the load ----------------------------------------------------------------------------------------
@dataclass
class Outcomes:
    """One entry per request, in the order they completed."""

    scheduled: list[float] = field(default_factory=list)  # seconds since the load started
    sent_late: list[float] = field(default_factory=list)  # how long after its schedule it was sent
    latency: list[float] = field(default_factory=list)  # from scheduled time to answer or error
    kind: list[str] = field(default_factory=list)  # status code, or the client's exception class
    request_id: list[str | None] = field(default_factory=list)


class Connections:
    """Keep-alive HTTP/1.1 connections to the API, reused in turn (an idle one would be closed by
    uvicorn after 5 s and fail the next request on it). Raw streams, not httpx: httpx's async client
    cost about 3 ms of CPU per request on this loaded 2-core host and fell seconds behind 200 req/s."""

    def __init__(self, port: int):
        self.port = port
        self.idle: collections.deque = collections.deque()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.popleft()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, target: str) -> tuple[str, str | None]:
        """(status code, X-Request-Id) of one GET; a failed connection is closed, never reused."""
        reader, writer = await self._connection()
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: chaos\r\n\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = dict(line.lower().split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
            await reader.readexactly(int(headers["content-length"]))
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return head[9:12], headers.get("x-request-id")


async def one_request(connections: Connections, user_id: int, scheduled: float, timeline: Timeline,
                      outcomes: Outcomes) -> None:  # fmt: skip
    sent_late = timeline.now() - scheduled
    try:
        kind, request_id = await asyncio.wait_for(connections.get(f"/post/recommendations/?id={user_id}"),
                                                  REQUEST_TIMEOUT)  # fmt: skip
    except (TimeoutError, OSError, EOFError, ValueError, KeyError) as error:
        kind, request_id = type(error).__name__, None  # e.g. ConnectionRefusedError, IncompleteReadError
    outcomes.scheduled.append(scheduled)
    outcomes.sent_late.append(sent_late)
    outcomes.latency.append(timeline.now() - scheduled)
    outcomes.kind.append(kind)
    outcomes.request_id.append(request_id)


async def open_loop(port: int, user_ids: list[int], rate: float, seconds: float, in_flight: int,
                    timeline: Timeline) -> Outcomes:  # fmt: skip
    """Request i is due at i / rate; it waits only for a free slot (then it is sent late, which its
    latency shows), never for the answers before it."""
    outcomes, rng, connections = Outcomes(), random.Random(17), Connections(port)
    slots = asyncio.Semaphore(in_flight)
    pending: set[asyncio.Task] = set()

    def finished(task: asyncio.Task) -> None:
        pending.discard(task)
        slots.release()

    for i in range(int(rate * seconds)):
        scheduled = i / rate
        delay = scheduled - timeline.now()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(one_request(connections, rng.choice(user_ids), scheduled, timeline, outcomes))
        pending.add(task)
        task.add_done_callback(finished)
    await asyncio.gather(*pending)
    for _, writer in connections.idle:
        writer.close()
    return outcomes


def snapshot_users(snapshot_dir: Path, count: int = 5000) -> list[int]:
    users = pq.read_table(snapshot_dir / "users.parquet", columns=["user_id"])["user_id"].to_pylist()
    return random.Random(3).sample(users, min(count, len(users)))


# --- the report --------------------------------------------------------------------------------------
def exposure_files(exposures_dir: Path) -> set[Path]:
    return set(exposures_dir.glob("*/*.parquet"))


def exposure_ids(files: list[Path]) -> list[str]:
    if not files:
        return []
    paths = ", ".join(f"'{p}'" for p in sorted(files))
    query = f"SELECT request_id FROM read_parquet([{paths}], union_by_name = true)"
    with duckdb.connect() as con:
        return [row[0] for row in con.execute(query).fetchall()]


def percentile_ms(values: np.ndarray, q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.1f}" if len(values) else "-"


def kinds_text(kinds: np.ndarray) -> str:
    names, counts = np.unique(kinds[kinds != "200"], return_counts=True)
    return ", ".join(f"{name} ×{count}" for name, count in zip(names, counts, strict=True)) or "0"


def phase_table(outcomes: Outcomes, timeline: Timeline, seconds: float) -> list[str]:
    scheduled, latency, kinds = (np.array(x) for x in (outcomes.scheduled, outcomes.latency, outcomes.kind))
    phases = timeline.phase_at(scheduled)
    bounds = [start for start, _ in timeline.phases[1:]] + [seconds]
    lines = ["| phase | seconds | requests | 200 | not 200, by kind | p50 ms | p99 ms | max ms |",
             "|---|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    rows = [(name, f"{start:.0f}–{end:.0f}", phases == name) for (start, name), end in zip(timeline.phases, bounds,
                                                                                           strict=True)]  # fmt: skip
    rows.append(("**whole run**", f"0–{seconds:.0f}", np.ones(len(kinds), bool)))
    for name, span, inside in rows:
        ok = inside & (kinds == "200")
        lines.append(f"| {name} | {span} | {inside.sum():,} | {ok.sum():,} | {kinds_text(kinds[inside])} "
                     f"| {percentile_ms(latency[ok], 50)} | {percentile_ms(latency[ok], 99)} "
                     f"| {latency[ok].max() * 1000 if ok.any() else 0:.0f} |")  # fmt: skip
    return lines


def failures_outside_restart(outcomes: Outcomes, timeline: Timeline) -> int:
    """Requests not answered 200 whose outcome came outside [SIGKILL, ready again]."""
    done_at = np.array(outcomes.scheduled) + np.array(outcomes.latency)
    low, high = timeline.restart_window
    outside = (done_at < low) | (done_at > high)
    return int((outside & (np.array(outcomes.kind) != "200")).sum())


def exposure_lines(outcomes: Outcomes, timeline: Timeline, logged: list[str]) -> tuple[list[str], float]:
    answered = {rid: s for rid, s, k in zip(outcomes.request_id, outcomes.scheduled, outcomes.kind, strict=True)
                if k == "200"}  # fmt: skip
    logged_set = set(logged)
    lost = [s for rid, s in answered.items() if rid not in logged_set]
    share = len(lost) / max(len(answered), 1)
    names, counts = np.unique(timeline.phase_at(np.array(lost)), return_counts=True)
    lost_by_phase = ", ".join(f"{name} {count}" for name, count in zip(names, counts, strict=True))
    lines = ["| 200 answers | exposure rows | answers with a row | answers without (lost) | lost share "
             "| rows with no answer received | duplicate rows |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             f"| {len(answered):,} | {len(logged):,} | {len(answered) - len(lost):,} | {len(lost):,} "
             f"| {share:.3%} | {len(logged_set - answered.keys()):,} "
             f"| {len(logged) - len(logged_set):,} |"]  # fmt: skip
    if lost:
        lines.append(f"\nLost by phase (of the request's scheduled time): {lost_by_phase}.")
    return lines, share


def rss_lines(samples: list[tuple[float, int, float]], timeline: Timeline) -> tuple[list[str], dict]:
    """RSS per minute of the run (median of the seconds), and the slope of each process after its
    last snapshot swap (the stretch in which a leak would show alone)."""
    times, pids, mb = (np.array(x) for x in zip(*samples, strict=True))
    lines = ["| minute | phases | pid | RSS MB (median) | min | max |", "|---:|---|---:|---:|---:|---:|"]
    for minute in range(int(times.max() // 60) + 1):
        for pid in dict.fromkeys(pids[(times // 60) == minute]):
            inside = ((times // 60) == minute) & (pids == pid)
            names = ", ".join(dict.fromkeys(timeline.phase_at(times[inside])))
            lines.append(f"| {minute} | {names} | {pid} | {np.median(mb[inside]):.0f} | {mb[inside].min():.0f} "
                         f"| {mb[inside].max():.0f} |")  # fmt: skip
    phases = timeline.phase_at(times)
    quiet = {"first process, rollback phase": (pids == pids[0]) & (phases == "rollback"),
             "restarted process, after restart": (pids == pids[-1]) & (phases == "after restart")}  # fmt: skip
    slopes = {}
    for label, inside in quiet.items():
        if inside.sum() >= 20:
            per_second = np.polyfit(times[inside][10:], mb[inside][10:], 1)[0]  # the first 10 s settle
            slopes[label] = (per_second * 60, mb[inside][10:].min(), mb[inside][10:].max(), int(inside.sum()) - 10)
    return lines, slopes


def print_report(args, outcomes: Outcomes, timeline: Timeline, logged: list[str], rss, api_end: dict,
                 load_average: tuple, leftover_journal: int) -> None:  # fmt: skip
    seconds = args.minutes * 60
    late = np.array(outcomes.sent_late)
    print(f"demo preset, {os.cpu_count()} cores, load average {load_average[0]:.1f} at the start; open loop "
          f"{args.rate:g} req/s for {args.minutes:g} min, at most {args.in_flight} in flight, keep-alive HTTP/1.1 "
          f"over asyncio streams; "
          f"the client sent {len(late):,} requests, {(late > 0.1).mean():.1%} of them over 100 ms after schedule "
          f"(max {late.max():.1f} s). Latency from the scheduled time.\n")  # fmt: skip
    print("Events (seconds since the load started):\n")
    print("\n".join(f"- {note}" for note in timeline.notes))
    print("\nRequests by phase (of their scheduled time):\n")
    print("\n".join(phase_table(outcomes, timeline, seconds)))
    print("\nExposures (rows in `exposures/*/*.parquet` written during the run, read after a clean stop) against "
          "the 200 answers, matched by `X-Request-Id`:\n")  # fmt: skip
    exposure_table, lost_share = exposure_lines(outcomes, timeline, logged)
    print("\n".join(exposure_table))
    print(f"\nAt the end: journal files left {leftover_journal}; the API's exposure log said {api_end}.")
    table, slopes = rss
    print("\nThe API's RSS, sampled each second:\n")
    print("\n".join(table))
    print("\nRSS trend after the last snapshot swap of each process (linear fit, first 10 s left out):\n")
    for label, (per_minute, low, high, count) in slopes.items():
        print(f"- {label}: {per_minute:+.2f} MB/min over {count} s (range {low:.0f}..{high:.0f} MB)")
    flat = bool(slopes) and all(abs(per_minute) <= RSS_FLAT_MB_PER_MINUTE for per_minute, *_ in slopes.values())
    outside = failures_outside_restart(outcomes, timeline)
    low, high = timeline.restart_window
    print("\nDone when (issue 17):\n")
    print(f"- not-200 outcomes outside the restart's own seconds ({low:.0f}–{high:.0f} s): {outside} "
          f"({'holds' if outside == 0 else 'fails'})")  # fmt: skip
    print(f"- exposures lost: {lost_share:.3%} of answered requests ({'holds' if lost_share <= 0.001 else 'fails'}, "
          f"line 0.1%)")  # fmt: skip
    print(f"- RSS flat (every trend above within ±{RSS_FLAT_MB_PER_MINUTE:g} MB/min): {'holds' if flat else 'fails'}")


# --- main --------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--in-flight", type=int, default=64, help="the most requests waiting for an answer")
    parser.add_argument("--port", type=int, default=8117)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    env = {**os.environ, "RECSYS_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.setdefault("RECSYS_SOURCE_URL", f"duckdb:///{data_dir / 'source.duckdb'}")
    snapshots_dir, exposures_dir = data_dir / "snapshots", data_dir / "exposures"
    base_id = (snapshots_dir / CURRENT).read_text().strip()
    user_ids = snapshot_users(snapshots_dir / base_id)
    earlier_exposures = exposure_files(exposures_dir)
    (data_dir / "logs").mkdir(exist_ok=True)
    load_average = os.getloadavg()
    seconds = args.minutes * 60

    api = Api(args.port, env, data_dir / "logs" / "chaos-api.log")
    api.start()
    api.wait_until(lambda state: state["snapshot"] == base_id)
    timeline = Timeline()
    corrupt: list[str] = []

    def run_events() -> None:
        try:
            corrupt.append(chaos(api, timeline, seconds, env, data_dir, base_id))
        except BaseException as error:  # SystemExit too: the report says which event failed, the load goes on
            timeline.note(f"an event failed: {error}")

    events = threading.Thread(target=run_events, daemon=True)
    try:
        with RssSampler(api, timeline.now) as sampler:
            events.start()
            outcomes = uvloop.run(open_loop(args.port, user_ids, args.rate, seconds, args.in_flight, timeline))
            events.join()
        state = api.ready() or {}
    finally:
        stopped = api.stop()
    timeline.note(f"clean stop (SIGINT): exit code {stopped}")
    logged = exposure_ids(sorted(exposure_files(exposures_dir) - earlier_exposures))
    leftover_journal = len(list((exposures_dir / ".journal").glob("*.journal")))
    for snapshot_id in corrupt:
        shutil.rmtree(snapshots_dir / snapshot_id)
    print_report(args, outcomes, timeline, logged, rss_lines(sampler.samples, timeline), state.get("exposures", {}),
                 load_average, leftover_journal)  # fmt: skip


if __name__ == "__main__":
    main()
