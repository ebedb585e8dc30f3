"""The generator's ground truth: the true like probability behind every generated like.

The data generator draws each like from p(user, post, time) = sigmoid(logit), with

    logit = intercept + user_bias[u] + post_quality[i] + taste[u, subtheme[i]]
            + hour_amplitude * cos(2π (hour_of_day - hour_peak) / 24)

In the dynamic world (``meta["world"] == "dynamic"``) posts also have a publication time, before
which they cannot be liked (p = 0), and two terms change with time:

            - post_decay[i] * age_of_post_in_days + trend[subtheme[i], t]

where ``trend`` is a [sub-theme, step] matrix of news-cycle bursts, interpolated linearly between
steps of ``trend_step_hours`` from ``trend_start`` and zero outside it. A static truth (and every
file saved before the dynamic world existed) has none of these arrays and is computed as before.

The generator saves those parameters here, as an artifact of its own under
``RECSYS_DATA_DIR/ground_truth``. Only evaluation (expected and oracle HitRate) and the traffic
simulator read it: no feature or model code may, or the models would be trained on the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAYS_FILE = "truth.npz"
META_FILE = "truth.json"
MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR


@dataclass
class GroundTruth:
    user_ids: np.ndarray  # sorted int32
    post_ids: np.ndarray  # sorted int32
    user_bias: np.ndarray  # float32 per user
    post_quality: np.ndarray  # float32 per post
    post_subtheme: np.ndarray  # int16 per post, index into subthemes
    taste: np.ndarray  # float32 [user, subtheme]
    intercept: float
    hour_amplitude: float
    hour_peak: float
    subthemes: list[str]  # "topic/subtheme" labels
    meta: dict
    # The dynamic world only (None in a static one):
    post_published: np.ndarray | None = None  # datetime64[us] per post
    post_decay: np.ndarray | None = None  # float32 per post: logit lost per day of age
    trend: np.ndarray | None = None  # float32 [subtheme, step]: news-cycle bursts on the logit
    trend_start: np.datetime64 | None = None  # the time of the trend's first step
    trend_step_hours: float | None = None

    def user_index(self, user_ids) -> np.ndarray:
        return _index_of(self.user_ids, user_ids, "user")

    def post_index(self, post_ids) -> np.ndarray:
        return _index_of(self.post_ids, post_ids, "post")

    def hour_effect(self, times) -> np.ndarray:
        micros = np.asarray(times, dtype="datetime64[us]").astype(np.int64)
        hours = (micros % MICROS_PER_DAY) / MICROS_PER_HOUR
        return self.hour_amplitude * np.cos(2 * np.pi * (hours - self.hour_peak) / 24)

    @property
    def is_dynamic(self) -> bool:
        return self.post_published is not None

    def trend_at(self, subtheme, times) -> np.ndarray:
        """The news-cycle trend of each sub-theme at each time, linear between the matrix's steps."""
        step = (np.asarray(times, dtype="datetime64[us]") - self.trend_start).astype(np.int64) / (
            self.trend_step_hours * MICROS_PER_HOUR
        )
        # Bursts lie wholly inside the matrix, whose first and last steps are 0: clipping makes it
        # 0 before and after the period too.
        step = np.clip(step, 0, self.trend.shape[1] - 1)
        lower = np.minimum(step.astype(np.int64), self.trend.shape[1] - 2)
        weight = step - lower
        return (1 - weight) * self.trend[subtheme, lower] + weight * self.trend[subtheme, lower + 1]

    def age_days(self, post_index, times) -> np.ndarray:
        """Days since each post's publication (negative before it)."""
        since = np.asarray(times, dtype="datetime64[us]") - self.post_published[post_index]
        return since.astype(np.int64) / MICROS_PER_DAY

    def post_appeal(self, post_index, times) -> np.ndarray:
        """The post's own part of the logit at each time: quality, trend and age decay (dynamic world)."""
        age = self.age_days(post_index, times)
        appeal = (
            self.post_quality[post_index]
            + self.trend_at(self.post_subtheme[post_index], times)
            - self.post_decay[post_index] * np.maximum(age, 0)
        )
        return np.where(age >= 0, appeal, -np.inf)

    def logit_by_index(self, user_index, post_index, times) -> np.ndarray:
        if self.is_dynamic:
            post_part = self.post_appeal(post_index, times)
        else:
            post_part = self.post_quality[post_index]
        return (
            self.intercept
            + self.user_bias[user_index]
            + post_part
            + self.taste[user_index, self.post_subtheme[post_index]]
            + self.hour_effect(times)
        )

    def like_probability(self, user_ids, post_ids, times) -> np.ndarray:
        """True like probability for each (user id, post id, time); arrays broadcast alike."""
        user_ids, post_ids, times = np.broadcast_arrays(
            np.asarray(user_ids), np.asarray(post_ids), np.asarray(times, dtype="datetime64[us]")
        )
        logit = self.logit_by_index(self.user_index(user_ids), self.post_index(post_ids), times)
        return 1.0 / (1.0 + np.exp(-logit))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        dynamic = (
            {"post_published": self.post_published, "post_decay": self.post_decay, "trend": self.trend}
            if self.is_dynamic
            else {}
        )
        np.savez_compressed(
            directory / ARRAYS_FILE,
            user_ids=self.user_ids,
            post_ids=self.post_ids,
            user_bias=self.user_bias,
            post_quality=self.post_quality,
            post_subtheme=self.post_subtheme,
            taste=self.taste,
            **dynamic,
        )
        meta = dict(
            self.meta,
            intercept=self.intercept,
            hour_amplitude=self.hour_amplitude,
            hour_peak=self.hour_peak,
            subthemes=self.subthemes,
        )
        if self.is_dynamic:
            meta |= {"trend_start": str(self.trend_start), "trend_step_hours": self.trend_step_hours}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> GroundTruth:
        if not (directory / META_FILE).exists():
            raise FileNotFoundError(
                f"no ground truth in {directory}: it exists only for data made by `recsys generate`"
            )
        meta = json.loads((directory / META_FILE).read_text())
        with np.load(directory / ARRAYS_FILE) as arrays:
            fields = {name: arrays[name] for name in arrays.files}
        trend_start, trend_step_hours = meta.pop("trend_start", None), meta.pop("trend_step_hours", None)
        return cls(
            **fields,
            intercept=meta.pop("intercept"),
            hour_amplitude=meta.pop("hour_amplitude"),
            hour_peak=meta.pop("hour_peak"),
            subthemes=meta.pop("subthemes"),
            meta=meta,
            trend_start=None if trend_start is None else np.datetime64(trend_start, "us"),
            trend_step_hours=trend_step_hours,
        )


def _index_of(sorted_ids: np.ndarray, ids, what: str) -> np.ndarray:
    ids = np.asarray(ids)
    index = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    unknown = sorted_ids[index] != ids
    if unknown.any():
        examples = ", ".join(str(v) for v in np.unique(ids[unknown])[:5])
        raise KeyError(f"{int(unknown.sum())} {what} ids are not in the ground truth (e.g. {examples})")
    return index
