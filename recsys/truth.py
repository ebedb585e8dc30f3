"""The generator's ground truth: the true like probability behind every generated like.

The data generator draws each like from p(user, post, time) = sigmoid(logit), with

    logit = intercept + user_bias[u] + post_quality[i] + taste[u, subtheme[i]]
            + hour_amplitude * cos(2π (hour_of_day - hour_peak) / 24)

and saves those parameters here, as an artifact of its own under ``RECSYS_DATA_DIR/ground_truth``.
Only evaluation (expected and oracle HitRate) and the traffic simulator read it: no feature or
model code may, or the models would be trained on the answer.
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

    def user_index(self, user_ids) -> np.ndarray:
        return _index_of(self.user_ids, user_ids, "user")

    def post_index(self, post_ids) -> np.ndarray:
        return _index_of(self.post_ids, post_ids, "post")

    def hour_effect(self, times) -> np.ndarray:
        micros = np.asarray(times, dtype="datetime64[us]").astype(np.int64)
        hours = (micros % MICROS_PER_DAY) / MICROS_PER_HOUR
        return self.hour_amplitude * np.cos(2 * np.pi * (hours - self.hour_peak) / 24)

    def logit_by_index(self, user_index, post_index, times) -> np.ndarray:
        return (
            self.intercept
            + self.user_bias[user_index]
            + self.post_quality[post_index]
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
        np.savez_compressed(
            directory / ARRAYS_FILE,
            user_ids=self.user_ids,
            post_ids=self.post_ids,
            user_bias=self.user_bias,
            post_quality=self.post_quality,
            post_subtheme=self.post_subtheme,
            taste=self.taste,
        )
        meta = dict(
            self.meta,
            intercept=self.intercept,
            hour_amplitude=self.hour_amplitude,
            hour_peak=self.hour_peak,
            subthemes=self.subthemes,
        )
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
        return cls(
            **fields,
            intercept=meta.pop("intercept"),
            hour_amplitude=meta.pop("hour_amplitude"),
            hour_peak=meta.pop("hour_peak"),
            subthemes=meta.pop("subthemes"),
            meta=meta,
        )


def _index_of(sorted_ids: np.ndarray, ids, what: str) -> np.ndarray:
    ids = np.asarray(ids)
    index = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    unknown = sorted_ids[index] != ids
    if unknown.any():
        examples = ", ".join(str(v) for v in np.unique(ids[unknown])[:5])
        raise KeyError(f"{int(unknown.sum())} {what} ids are not in the ground truth (e.g. {examples})")
    return index
