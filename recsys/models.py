"""CatBoost like-classifiers: the two A/B variants and the original's recipe as a baseline.

- ``control`` and ``test`` are identical but for the text features: TF-IDF components (control) or
  sentence-embedding components (test), and the similarity features computed in that text space.
- ``recipe`` is the original course solution: user features, topic, TF-IDF components and the
  month; no history. It is trained and evaluated the same way, as a baseline, and never served.

Training data are views only (never the duplicated ``like`` rows); the target is ``target``.

``control`` and ``test`` boost from the joint taste model (``recsys.taste``): its log-odds is the
starting point of every prediction (CatBoost's ``baseline``), and the trees learn what it misses.
Early stopping keeps the iteration at which the model best orders each user's posts of a day on the
validation days (QueryAUC over user-day groups): the order a feed is served in, and what replay
HitRate@5 measures. Overall AUC also rewards telling users apart, which no feed ranking needs.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from recsys.features import CATEGORICAL, CLUSTER, COLLAB, HISTORY, SIMILARITY, TASTE, TIME, USER_CATEGORICAL

log = logging.getLogger(__name__)

MODEL_KINDS = ("control", "test", "recipe")
# The text space each kind's text features come from.
TEXT_SPACE = {"control": "control", "test": "test", "recipe": "control"}
# The kinds that boost from the taste model's log-odds (the recipe has no history features).
OFFSET = "taste_model_logit"
OFFSET_KINDS = ("control", "test")
# The served ranking weighs the probability by the post's recent exposure (``ranking_scores``).
EXPOSURE_COLUMN = "post_views_1d"
EXPOSURE_POWER_KEY = "exposure_power"


def feature_columns(kind: str, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(all feature columns, categorical ones) of a model kind, in a fixed order."""
    text = [c for c in frame.columns if c.startswith("text_")]
    if kind == "recipe":
        categorical = [*USER_CATEGORICAL, "topic"]
        return [*categorical, "age", "month", *text], categorical
    if kind in ("control", "test"):
        categorical = list(CATEGORICAL)
        return ([*categorical, "age", "hour", "day_of_week", *HISTORY, *TIME, *COLLAB, *SIMILARITY, *CLUSTER, *TASTE,
                 *text], categorical)  # fmt: skip
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def catboost_params(settings) -> dict:
    # Measured on this machine (stack notes): one-hot for small categoricals and first-order CTRs
    # for the rest (city) train several times faster than the defaults at no loss.
    return {
        "iterations": settings.catboost_iterations,
        "learning_rate": 0.08,
        "depth": 6,
        "loss_function": "Logloss",
        "eval_metric": "QueryAUC:type=Ranking",
        "custom_metric": ["AUC"],
        "one_hot_max_size": 16,
        "max_ctr_complexity": 1,
        "od_type": "Iter",
        "od_wait": 40,
        "use_best_model": True,
        "random_seed": settings.seed,
        "thread_count": -1,
        "allow_writing_files": False,
    }


def _offset(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """The log-odds predictions start from: the column's values, or None (CatBoost's own start)."""
    if column is None:
        return None
    return np.nan_to_num(frame[column].to_numpy(np.float64), nan=0.0)  # no fit or unknown post: no taste


def train(kind: str, train_frame: pd.DataFrame, valid_frame: pd.DataFrame, settings):
    """Fit a CatBoostClassifier with early stopping on the validation days; returns (model, info).

    The frames hold the features, ``target`` and ``user_day`` (the group a row's order is measured
    in; the rows of a group adjacent).
    """
    from catboost import CatBoostClassifier

    columns, categorical = feature_columns(kind, train_frame)
    offset = OFFSET if kind in OFFSET_KINDS else None
    params = catboost_params(settings)
    model = CatBoostClassifier(**params)
    started = time.perf_counter()
    model.fit(
        _pool(train_frame, columns, categorical, offset),
        eval_set=_pool(valid_frame, columns, categorical, offset),
        verbose=max(1, params["iterations"] // 5),
        log_cout=sys.stderr,  # progress goes where logs go; stdout stays for results
    )
    seconds = time.perf_counter() - started
    if offset:  # kept in the model file, so that every prediction starts where training did
        model.get_metadata()["offset"] = offset
    best = model.get_best_iteration()
    scores = {name: values[best] for name, values in model.get_evals_result()["validation"].items()}
    # QueryAUC counts a user-day without both a like and a non-like as 0: report the mean AUC over the others.
    outcomes = valid_frame.groupby("user_day")["target"].nunique()
    scores[params["eval_metric"]] *= len(outcomes) / max(int((outcomes == 2).sum()), 1)
    log.info("trained %s on %s rows in %.1f s (best iteration %d, valid AUC within user-days %.4f, overall %.4f)", kind,
             f"{len(train_frame):,}", seconds, best, scores[params["eval_metric"]], scores["AUC"])  # fmt: skip
    importance = dict(zip(columns, np.round(model.get_feature_importance(), 2).tolist(), strict=True))
    info = {
        "kind": kind,
        "features": columns,
        "categorical": categorical,
        "params": params,
        "train_rows": len(train_frame),
        "valid_rows": len(valid_frame),
        "seconds": round(seconds, 1),
        "offset": offset,
        "best_iteration": best,
        "valid_query_auc": round(scores[params["eval_metric"]], 4),
        "valid_auc": round(scores["AUC"], 4),
        "feature_importance": importance,
    }
    return model, info


def _pool(frame: pd.DataFrame, columns: list[str], categorical: list[str], offset: str | None):
    from catboost import Pool

    return Pool(frame[columns], frame["target"].to_numpy(), cat_features=categorical,
                group_id=frame["user_day"].to_numpy(), baseline=_offset(frame, offset))  # fmt: skip


def predict(model, kind: str, frame: pd.DataFrame) -> np.ndarray:
    """Like probabilities for the rows of a feature frame."""
    from catboost import Pool

    columns, categorical = feature_columns(kind, frame)
    raw = model.predict(Pool(frame[columns], cat_features=categorical), prediction_type="RawFormulaVal")
    start = _offset(frame, model.get_metadata().get("offset"))
    return expit(raw if start is None else raw + start)


def exposure_power(model) -> float:
    """The power of the post's recent exposure in the model's served ranking (0: its probability alone)."""
    return float(model.get_metadata().get(EXPOSURE_POWER_KEY, 0.0))


def ranking_scores(model, kind: str, frame: pd.DataFrame, power: float | None = None,
                   probability: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """What a model serves by: its like probability given a view, times (views of the post on the last
    day + 1) ** power. A post is liked later only if it is shown later, and a feed chosen by an
    earlier ranking shows what it showed yesterday again: the product estimates P(liked later). The
    power is chosen per model on the validation days (``training.tune_exposure``) and kept in the
    model file; None reads it from there. probability: the model's predictions for frame, when made
    already."""
    power = exposure_power(model) if power is None else power
    probability = predict(model, kind, frame) if probability is None else probability
    if power == 0:
        return probability
    return probability * (np.nan_to_num(frame[EXPOSURE_COLUMN].to_numpy(np.float64)) + 1) ** power


def load(path: Path):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier()
    model.load_model(str(path))
    return model
