from pathlib import Path

import pytest

from recsys.config import ConfigError, load_settings


def test_defaults_put_the_embedded_source_beside_the_artifacts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("RECSYS_DATA_DIR", "RECSYS_SOURCE_URL", "RECSYS_ORPHAN_ROWS", "RECSYS_EXTRACTS_KEPT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.source_url == f"duckdb:///{tmp_path / 'data' / 'source.duckdb'}"
    assert settings.orphan_rows == "fail"
    assert settings.extracts_dir == tmp_path / "data" / "extracts"


def test_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("RECSYS_SOURCE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("RECSYS_ORPHAN_ROWS", "DROP")
    monkeypatch.setenv("RECSYS_EXTRACTS_KEPT", "5")
    settings = load_settings()
    assert settings.data_dir == Path(tmp_path / "elsewhere")
    assert (settings.source_url, settings.orphan_rows, settings.extracts_kept) == ("postgresql://u@h/db", "drop", 5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RECSYS_ORPHAN_ROWS", "ignore", "RECSYS_ORPHAN_ROWS='ignore': expected one of fail, drop"),
        ("RECSYS_EXTRACTS_KEPT", "many", "RECSYS_EXTRACTS_KEPT='many' is not an integer"),
        ("RECSYS_EXTRACTS_KEPT", "0", "RECSYS_EXTRACTS_KEPT=0 must be at least 1"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()
