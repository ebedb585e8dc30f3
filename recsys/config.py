"""All settings in one place: environment first, documented defaults.

Every setting is read from a ``RECSYS_*`` environment variable when a ``Settings`` is built, so a
test or a DAG task can change the environment and build a fresh one. The README lists them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ORPHAN_POLICIES = ("fail", "drop")


class ConfigError(ValueError):
    """A setting has a value the product cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    source_url: str
    orphan_rows: str
    extracts_kept: int
    log_level: str

    @property
    def extracts_dir(self) -> Path:
        return self.data_dir / "extracts"

    @property
    def ground_truth_dir(self) -> Path:
        return self.data_dir / "ground_truth"


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def load_settings() -> Settings:
    """Build the settings from the environment (defaults documented in the README)."""
    data_dir = Path(os.environ.get("RECSYS_DATA_DIR") or "data").expanduser().resolve()
    # The embedded default source lives beside the artifacts it feeds.
    source_url = os.environ.get("RECSYS_SOURCE_URL") or f"duckdb:///{data_dir / 'source.duckdb'}"
    orphan_rows = (os.environ.get("RECSYS_ORPHAN_ROWS") or "fail").lower()
    if orphan_rows not in ORPHAN_POLICIES:
        raise ConfigError(f"RECSYS_ORPHAN_ROWS={orphan_rows!r}: expected one of {', '.join(ORPHAN_POLICIES)}")
    return Settings(
        data_dir=data_dir,
        source_url=source_url,
        orphan_rows=orphan_rows,
        extracts_kept=_env_int("RECSYS_EXTRACTS_KEPT", default=3, minimum=1),
        log_level=(os.environ.get("RECSYS_LOG_LEVEL") or "INFO").upper(),
    )
