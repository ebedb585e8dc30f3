"""`make run` (scripts/run_local.py): what it starts listens on this machine only unless told otherwise."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run_local.py"


@pytest.fixture
def run_local():
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listening_hosts(run_local, tmp_path) -> tuple[str, str]:
    """(the Airflow api-server's host, the API's --host) as `make run` would start them."""
    host = run_local.bind_host()
    env = run_local.environment(tmp_path, 8080, 8000, host)
    command = run_local.api_command(host, 8000)
    return env["AIRFLOW__API__HOST"], command[command.index("--host") + 1]


def test_make_run_listens_on_loopback_by_default(run_local, tmp_path, monkeypatch):
    monkeypatch.delenv("BIND_HOST", raising=False)
    assert listening_hosts(run_local, tmp_path) == ("127.0.0.1", "127.0.0.1")


def test_bind_host_opens_the_airflow_ui_and_the_api(run_local, tmp_path, monkeypatch):
    monkeypatch.setenv("BIND_HOST", "0.0.0.0")
    assert listening_hosts(run_local, tmp_path) == ("0.0.0.0", "0.0.0.0")
    env = run_local.environment(tmp_path, 8080, 8000, "0.0.0.0")
    assert env["RECSYS_API_URL"] == "http://127.0.0.1:8000"  # reached through loopback all the same
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
