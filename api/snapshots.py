"""The served snapshot in memory, and the watcher that swaps in a newly published one.

A ``LoadedSnapshot`` is immutable once built; a request takes one reference and uses only it, so a
swap never mixes two snapshots in one response. Loading happens off the request path; a snapshot
that fails to load in any way (manifest, checksums, a file DuckDB, Arrow or CatBoost cannot read) is
refused whole and the old one keeps serving.

What the watcher reports (``last_error``, ``source_error``: shown by /ready and in 503 bodies) names
snapshot ids, files relative to the snapshot and error classes, never absolute paths or the source's
URL; the log has the full errors.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from recsys import ab, models, precompute, snapshot
from recsys.features import with_cohorts
from recsys.sources import SourceError, open_source, quiet_duckdb

log = logging.getLogger(__name__)


@dataclass
class LoadedSnapshot:
    id: str
    manifest: dict
    user_ids: np.ndarray  # sorted
    user_rows: dict  # user_id -> row (a dict: the fastest lookup from a Python int)
    user_groups: list  # row -> A/B group, as assigned when the snapshot was staged
    offsets: np.ndarray  # recommendations of user row u, bucket b: post_rows[offsets[u * buckets + b]:...+1]
    post_rows: np.ndarray  # rows into post_json
    post_json: list[bytes]  # {"id", "text", "topic"} of each post, encoded once
    post_index: pd.Index  # post_id -> row into post_json
    post_ids: list[int]  # row -> post_id (Python ints: a request maps a few rows, faster than numpy)
    loaded_at: float
    folder: Path
    fresh_scorers: dict = field(default_factory=dict)  # group -> FreshScorer

    @property
    def buckets(self) -> int:
        return self.manifest["time_buckets"]

    @property
    def models_version(self) -> str:
        return self.manifest["models_version"]

    @property
    def group_methods(self) -> dict[str, str]:
        """group -> the method its known users are served by (a snapshot from before the gate chose
        baselines names none: each group's model served it)."""
        return self.manifest.get("group_methods", self.manifest["group_models"])

    @property
    def fresh_methods(self) -> dict[str, str]:
        """group -> the method its fresh users (not in the snapshot) are served by."""
        return self.manifest.get("fresh_methods", self.manifest["group_models"])

    def group_of(self, user_id: int) -> str:
        return ab.assign_group(user_id, self.manifest["ab"]["salt"], self.manifest["ab"]["test_share"])

    def lookup(self, user_id: int, hour: int, limit: int, offset: int = 0) -> tuple[list[int], str] | None:
        """(post rows precomputed for the hour's bucket, from the offset-th on, group) of a user, or None for
        a user not in the snapshot. Past the precomputed top K the list is empty.

        Rows come back as a Python list: the few rows of a response are then indexed and rendered at
        Python speed, where numpy scalars cost a microsecond each on the hot path."""
        row = self.user_rows.get(user_id)
        if row is None:
            return None
        key = row * self.buckets + precompute.bucket_of(hour, self.buckets)
        start, end = self.offsets[key] + offset, self.offsets[key + 1]
        return self.post_rows[min(start, end) : min(end, start + limit)].tolist(), self.user_groups[row]

    def score_fresh(self, user: dict, when: pd.Timestamp, limit: int, offset: int = 0) -> list[int]:
        """Rank posts for a user the snapshot does not know (a user_data row with its cohort)."""
        post_ids = self.fresh_scorers[self.group_of(user["user_id"])].rank(user, when)[offset : offset + limit]
        rows = self.post_index.get_indexer(post_ids)
        return rows[rows >= 0].tolist()

    def render(self, group: str, rows: list[int]) -> bytes:
        """The response body: posts encoded once at load, joined."""
        return (
            b'{"exp_group":"'
            + group.encode()
            + b'","recommendations":['
            + b",".join([self.post_json[i] for i in rows])
            + b"]}"
        )


class FreshScorer:
    """Ranks posts for users who signed up after the snapshot, as precompute ranks everyone else: the
    method serving the group's fresh users (its model, or a baseline) over the same serving features
    (no history of their own) and the same cohort candidates. Built when a snapshot loads, so no
    request waits for a model to load."""

    def __init__(self, folder: Path, method: str, space: str, candidates: int, cohorts: pd.DataFrame):
        """space: the group's text space; cohorts: one user row per cohort the snapshot knows, whose
        candidates are listed now."""
        with loading_step(folder.name, f"loading models/{method}.cbm"):  # a baseline loads nothing
            self.model, self.method = precompute.load_method(folder, method), method
        self.candidates = candidates
        with loading_step(folder.name, f"reading state/{space}"):
            self.serving = precompute.load_serving(folder, space, own_history=False)
        self.post_ids = self.serving.posts["post_id"].to_numpy()
        self._by_cohort = dict(zip(cohorts["cohort"], self._candidates_of(cohorts), strict=True))

    def _candidates_of(self, users: pd.DataFrame) -> np.ndarray:
        return precompute.cohort_candidates(self.serving, users, self.candidates)

    def rank(self, user: dict, when: pd.Timestamp) -> np.ndarray:
        """Post ids, best first, of the user's candidates (a cohort not seen at load: listed now)."""
        users = pd.DataFrame([user])
        candidates = self._by_cohort.get(user["cohort"])
        if candidates is None:
            candidates = self._by_cohort.setdefault(user["cohort"], self._candidates_of(users)[0])
        frame = self.serving.features(users, candidates[None, :], when)
        scores = precompute.method_scores(self.model, self.method, frame)
        return self.post_ids[candidates[np.argsort(-scores, kind="stable")]]


@contextlib.contextmanager
def loading_step(snapshot_id: str, step: str):
    """Report a failure of one step of loading a snapshot as a SnapshotError naming the step and the
    error's class: the library's own message often holds absolute paths."""
    try:
        yield
    except snapshot.SnapshotError:
        raise
    except Exception as error:
        raise snapshot.SnapshotError(f"snapshot {snapshot_id}: {step} failed ({type(error).__name__})") from error


def refusal_reason(snapshot_id: str, error: Exception) -> str:
    """Why a snapshot was refused, safe to show: SnapshotError messages name only ids and relative
    files; anything else is named by its class."""
    if isinstance(error, snapshot.SnapshotError):
        detail = str(error).removeprefix(f"snapshot {snapshot_id}: ")
    else:
        detail = f"loading failed ({type(error).__name__})"
    return f"snapshot {snapshot_id} refused: {detail}"


def load_snapshot(folder: Path) -> LoadedSnapshot:
    """Verify a published snapshot and load it into compact arrays through DuckDB."""
    started = time.perf_counter()
    with loading_step(folder.name, "verifying its files"):
        manifest = snapshot.verify(folder)
    buckets = manifest["time_buckets"]
    with contextlib.closing(quiet_duckdb()) as con:
        with loading_step(folder.name, "reading posts.parquet"):
            posts = con.execute(f"SELECT post_id, text, topic FROM read_parquet('{folder / 'posts.parquet'}')").df()
        with loading_step(folder.name, "reading users.parquet"):
            users = con.execute(
                f"""SELECT user_id, "group" FROM read_parquet('{folder / "users.parquet"}') ORDER BY user_id"""
            ).fetchnumpy()
            cohorts = con.execute(f"SELECT DISTINCT ON (cohort) * FROM read_parquet('{folder / 'users.parquet'}') "
                                  "ORDER BY cohort, user_id").df()  # fmt: skip
        with loading_step(folder.name, "reading recommendations/*.parquet"):
            ranked = con.execute(f"""
                SELECT user_id, bucket, post_id FROM read_parquet('{folder / "recommendations" / "*.parquet"}')
                ORDER BY user_id, bucket, rank""").fetchnumpy()
    post_json = [
        json.dumps({"id": int(i), "text": text, "topic": topic}, ensure_ascii=False).encode()
        for i, text, topic in zip(posts["post_id"], posts["text"], posts["topic"], strict=True)
    ]
    post_index = pd.Index(posts["post_id"].to_numpy())
    user_ids = users["user_id"].astype(np.int64)
    user_rows = np.searchsorted(user_ids, ranked["user_id"])
    keys = user_rows * buckets + ranked["bucket"].astype(np.int64)
    offsets = np.searchsorted(keys, np.arange(len(user_ids) * buckets + 1)).astype(np.int64)
    post_rows = post_index.get_indexer(ranked["post_id"]).astype(np.int32)
    loaded = LoadedSnapshot(id=folder.name, manifest=manifest, user_ids=user_ids,
                            user_rows=dict(zip(user_ids.tolist(), range(len(user_ids)), strict=True)),
                            user_groups=[str(g) for g in users["group"]], offsets=offsets,
                            post_rows=post_rows, post_json=post_json, post_index=post_index,
                            post_ids=post_index.to_numpy().tolist(),
                            loaded_at=time.time(), folder=folder)  # fmt: skip
    scorers = {}  # one per (method, text space): groups served alike share it
    for group, method in loaded.fresh_methods.items():
        key = (method, models.TEXT_SPACE[manifest["group_models"][group]])
        if key not in scorers:
            scorers[key] = FreshScorer(folder, *key, manifest["candidates"], cohorts)
        loaded.fresh_scorers[group] = scorers[key]
    log.info("loaded snapshot %s: %s users, %s recommendations, %s posts in %.2f s", folder.name,
             f"{len(user_ids):,}", f"{len(post_rows):,}", f"{len(post_json):,}",
             time.perf_counter() - started)  # fmt: skip
    return loaded


def driver_error(error: Exception) -> str:
    """The class of the driver's error behind a source failure (a SourceError wraps it): its message
    and the SourceError's name the source's URL, host, user or file."""
    cause = error.__cause__ or error.__context__
    return type(cause or error).__name__


class SnapshotWatcher:
    """Holds the current snapshot and the fresh users; a thread polls ``snapshots/CURRENT`` and
    swaps in new snapshots, and reads which users the source has that the snapshot does not.

    Fresh users are read every RECSYS_RELOAD_SECONDS, not per request: a request never waits for
    the source, and unknown ids never reach it.
    """

    def __init__(self, settings):
        self.settings = settings
        self.current: LoadedSnapshot | None = None
        self.fresh_users: dict[int, dict] = {}  # user_data rows, with cohort, of users the snapshot does not know
        self.last_error: str | None = None
        self.source_error: str | None = None
        self._source_summary = None  # (snapshot id, source ids summary) of the last refresh
        self._refused: str | None = None  # what CURRENT named when its snapshot was refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Load the snapshot CURRENT names, unless it is the one served or was refused: a refused one
        is tried again only once CURRENT names another. While nothing is served (at start-up) a
        refused snapshot gives way to the newest valid older one kept for rollback."""
        wanted = snapshot.current_id(self.settings)
        if wanted is None:
            self.last_error = f"no snapshot published (no snapshots/{snapshot.CURRENT}): run `recsys pipeline` first"
            return
        if self.current is not None and self.current.id == wanted:
            self._refused = self.last_error = None  # e.g. a rollback to the snapshot served after a refusal
            return
        if wanted == self._refused:
            return
        loaded, reason = self._load(wanted)
        if loaded is not None:
            self._serve(loaded)
            self._refused = self.last_error = None
            return
        self._refused, self.last_error = wanted, reason
        if self.current is None:
            self._fall_back(wanted)
        else:
            log.warning("still serving %s; %s is tried again only once CURRENT names another", self.current.id,
                        wanted)  # fmt: skip

    def _load(self, snapshot_id: str) -> tuple[LoadedSnapshot | None, str | None]:
        """(the snapshot, None), or (None, why it was refused): any failure refuses it whole."""
        try:
            return load_snapshot(self.settings.snapshots_dir / snapshot_id), None
        except Exception as error:
            reason = refusal_reason(snapshot_id, error)
            # A refusal of verify explains itself; a library's failure needs its traceback.
            explained = isinstance(error, snapshot.SnapshotError) and error.__cause__ is None
            log.error("%s", reason, exc_info=None if explained else error)
            return None, reason

    def _fall_back(self, refused: str) -> None:
        """Serve the newest valid snapshot older than the refused one, saying so in last_error."""
        older = [s for s in snapshot.published(self.settings) if s < refused]
        for candidate in reversed(older):
            loaded, _ = self._load(candidate)
            if loaded is not None:
                self._serve(loaded)
                self.last_error = f"{self.last_error}; serving {candidate} instead, the newest valid older snapshot"
                log.warning("%s", self.last_error)
                return
        self.last_error = f"{self.last_error}; no valid older snapshot to fall back to"
        log.error("%s: not ready", self.last_error)

    def _serve(self, loaded: LoadedSnapshot) -> None:
        self.current = loaded
        # The snapshot's objects live until the next swap: keep them out of the garbage collector's
        # full passes, so that those stay short while requests wait.
        gc.collect()
        gc.freeze()

    def refresh_fresh_users(self) -> None:
        """Read the users the source has and the snapshot does not (only new ones row by row).

        It runs beside requests on the same cores, so it stays cheap: a one-row summary of the ids
        first, and the full id list only when that changed (or the snapshot did)."""
        current = self.current
        if current is None:
            return
        try:
            source = open_source(self.settings.source_url)
            summary = (current.id, source.user_ids_summary())
            if summary == self._source_summary:
                return
            ids = source.user_ids()
            fresh_ids = ids[~np.isin(ids, current.user_ids)].tolist()
            known = self.fresh_users
            rows = source.find_users([u for u in fresh_ids if u not in known])
            # Each with its cohort now, so that a request does not compute it.
            cohorts = with_cohorts(pd.DataFrame(rows))["cohort"] if rows else []
            found = {row["user_id"]: {**row, "cohort": cohort} for row, cohort in zip(rows, cohorts, strict=True)}
            self.fresh_users = {u: known.get(u) or found[u] for u in fresh_ids if u in known or u in found}
            self._source_summary, self.source_error = summary, None
        except (SourceError, duckdb.Error) as error:  # e.g. a DuckDB source locked by a writer for a moment
            self.source_error = f"fresh users not refreshed: the source database is unreachable ({driver_error(error)})"
            log.warning("fresh users not refreshed: %s; keeping %d known fresh users", error, len(self.fresh_users))

    def start(self) -> None:
        self._poll()
        self._thread = threading.Thread(target=self._run, name="snapshot-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reload_seconds):
            self._poll()

    def _poll(self) -> None:
        try:
            self.check()
            self.refresh_fresh_users()
        except Exception:  # neither the watcher nor the API's start-up may die of one bad snapshot or source
            log.exception("snapshot check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
