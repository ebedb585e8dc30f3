"""CatBoost like-classifiers: the two A/B variants and the original's recipe as a baseline.

- ``control`` and ``test`` are identical but for the text features: TF-IDF components (control) or
  sentence-embedding components (test), and the similarity features computed in that text space.
- ``recipe`` is the original course solution: user features, topic, TF-IDF components and the
  month; no history. It is trained and evaluated the same way, as a baseline, and never served.

Training data are views only (never the duplicated ``like`` rows); the target is ``target``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.features import CATEGORICAL, CLUSTER, HISTORY, SIMILARITY, TASTE, USER_CATEGORICAL

log = logging.getLogger(__name__)

MODEL_KINDS = ("control", "test", "recipe")
# The text space each kind's text features come from.
TEXT_SPACE = {"control": "control", "test": "test", "recipe": "control"}


def feature_columns(kind: str, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(all feature columns, categorical ones) of a model kind, in a fixed order."""
    text = [c for c in frame.columns if c.startswith("text_")]
    if kind == "recipe":
        categorical = [*USER_CATEGORICAL, "topic"]
        return [*categorical, "age", "month", *text], categorical
    if kind in ("control", "test"):
        categorical = list(CATEGORICAL)
        return [*categorical, "age", "hour", "day_of_week", *HISTORY, *SIMILARITY, *CLUSTER, *TASTE, *text], categorical
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def catboost_params(settings) -> dict:
    # Measured on this machine (stack notes): one-hot for small categoricals and first-order CTRs
    # for the rest (city) train several times faster than the defaults at no loss.
    return {
        "iterations": settings.catboost_iterations,
        "learning_rate": 0.08,
        "depth": 6,
        "loss_function": "Logloss",
        "eval_metric": "AUC",
        "one_hot_max_size": 16,
        "max_ctr_complexity": 1,
        "od_type": "Iter",
        "od_wait": 40,
        "use_best_model": True,
        "random_seed": settings.seed,
        "thread_count": -1,
        "allow_writing_files": False,
    }


def train(kind: str, train_frame: pd.DataFrame, train_target, valid_frame: pd.DataFrame, valid_target, settings):
    """Fit a CatBoostClassifier with early stopping on the validation days; returns (model, info)."""
    from catboost import CatBoostClassifier, Pool

    columns, categorical = feature_columns(kind, train_frame)
    params = catboost_params(settings)
    model = CatBoostClassifier(**params)
    started = time.perf_counter()
    model.fit(
        Pool(train_frame[columns], np.asarray(train_target), cat_features=categorical),
        eval_set=Pool(valid_frame[columns], np.asarray(valid_target), cat_features=categorical),
        verbose=max(1, params["iterations"] // 5),
        log_cout=sys.stderr,  # progress goes where logs go; stdout stays for results
    )
    seconds = time.perf_counter() - started
    log.info("trained %s on %s rows in %.1f s (best iteration %d, valid AUC %.4f)", kind, f"{len(train_frame):,}",
             seconds, model.get_best_iteration(), model.get_best_score()["validation"]["AUC"])  # fmt: skip
    importance = dict(zip(columns, np.round(model.get_feature_importance(), 2).tolist(), strict=True))
    info = {
        "kind": kind,
        "features": columns,
        "categorical": categorical,
        "params": params,
        "train_rows": len(train_frame),
        "valid_rows": len(valid_frame),
        "seconds": round(seconds, 1),
        "best_iteration": model.get_best_iteration(),
        "valid_auc": round(model.get_best_score()["validation"]["AUC"], 4),
        "feature_importance": importance,
    }
    return model, info


def predict(model, kind: str, frame: pd.DataFrame) -> np.ndarray:
    """Like probabilities for the rows of a feature frame."""
    from catboost import Pool

    columns, categorical = feature_columns(kind, frame)
    return model.predict_proba(Pool(frame[columns], cat_features=categorical))[:, 1]


def load(path: Path):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier()
    model.load_model(str(path))
    return model
