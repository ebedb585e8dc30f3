"""The baselines: simple rankings computed from the same feature frame the models see.

Each baseline is a function of a feature frame (``recsys.features``) giving one score per row,
higher first. Evaluation measures them exactly as it measures the models, the gate compares the
models with the best of them, and precompute and the API serve the best one for a group whose model
did not prove itself. Ties (e.g. posts with no likes in a window) are broken by the post's long-run
smoothed like-rate, which lies in [0, 1): added to a whole count it never reorders the counts.

- ``popular``: the post's smoothed like-rate over all history.
- ``trending_1d``, ``trending_7d``, ``trending_14d``: the post's likes in the last 1, 7 or 14 days
  before the request's day.
- ``personal``: the share of the user's past likes on the post's topic.
- ``collaborative``: the co-like signal (the dot product of user and post factors of a matrix
  factorization of past likes); a user or post without factors falls back to trending over 7 days,
  below every post with factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRENDING_WINDOWS = (1, 7, 14)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return np.nan_to_num(frame[name].to_numpy(dtype=float), nan=0.0)


def _tiebreak(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "post_like_rate").clip(0, 0.999)


def popular(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "post_like_rate")


def _trending(days: int):
    def score(frame: pd.DataFrame) -> np.ndarray:
        return _column(frame, f"post_likes_{days}d") + _tiebreak(frame)

    score.__name__ = f"trending_{days}d"
    return score


def personal(frame: pd.DataFrame) -> np.ndarray:
    # A share lies in [0, 1]; the tie-break is scaled below the smallest difference that matters.
    return _column(frame, "user_topic_like_share") + 1e-3 * _tiebreak(frame)


def collaborative(frame: pd.DataFrame) -> np.ndarray:
    factors = frame["collab_score"].to_numpy(dtype=float)
    trending = _trending(7)(frame)
    fallback = -1e6 + trending  # below any factor score, ordered by trending
    return np.where(np.isnan(factors), fallback, factors)


BASELINES = {
    "popular": popular,
    **{f"trending_{days}d": _trending(days) for days in TRENDING_WINDOWS},
    "personal": personal,
    "collaborative": collaborative,
}


def score(method: str, frame: pd.DataFrame) -> np.ndarray:
    """Scores of a baseline for the rows of a feature frame."""
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; expected one of {', '.join(BASELINES)}")
    return BASELINES[method](frame)
