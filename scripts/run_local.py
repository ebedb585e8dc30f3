"""`make run`: the whole product on one machine, without Docker.

Generates the demo data into the DuckDB source (kept if it exists), starts the lookup API and
`airflow standalone` (SQLite metadata, LocalExecutor) with this repository's DAGs and plugin, runs
the nightly DAG once (unless a snapshot is already published), waits until the API serves it, and
prints where everything is. Ctrl-C stops everything it started.

Environment: RECSYS_DATA_DIR (default ./data), AIRFLOW_PORT (8080), API_PORT (8000), RUN_NIGHTLY=1 to
trigger the nightly DAG even when a snapshot exists; every RECSYS_* setting reaches the tasks and the API.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "recsys_nightly"
AB_DAG_ID = "recsys_ab_report"


def say(message: str) -> None:
    print(f"[make run {dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def environment(data_dir: Path, airflow_port: int, api_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RECSYS_DATA_DIR": str(data_dir),
        "RECSYS_API_URL": env.get("RECSYS_API_URL") or f"http://127.0.0.1:{api_port}",
        "AIRFLOW_HOME": str(data_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # 32 LocalExecutor workers by default: 4 keep the machine's memory for the tasks themselves.
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        # Three models train at once, each with its own DuckDB: the demo's data fits in far less than
        # the default 4 GB each (DuckDB spills beyond the limit rather than failing).
        "RECSYS_DUCKDB_MEMORY_LIMIT": env.get("RECSYS_DUCKDB_MEMORY_LIMIT") or "1GB",
    })  # fmt: skip
    return env


def start(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """A background process in its own process group (so Ctrl-C here reaches it only through us),
    with SIGINT handled by default even if this script was started with it ignored (as background
    jobs of a non-interactive shell are): airflow standalone stops only on SIGINT."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def wait_for(description: str, check, timeout: float, processes=()) -> object:
    deadline = time.monotonic() + timeout
    while True:
        for process, log_path in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{description}: {process.args[0]} exited with {process.returncode}; see {log_path}")
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {description}")
        time.sleep(2)


def airflow_client(base: str, airflow_home: Path) -> httpx.Client:
    """A client of Airflow's REST API, logged in as the admin (password generated on first start)."""
    passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    token.raise_for_status()
    return httpx.Client(base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                        timeout=30)  # fmt: skip


def start_nightly(client: httpx.Client) -> str:
    """Unpause the nightly DAG and return the id of the run that does today's work: unpausing makes
    the scheduler start the latest daily run by itself; if it does not (it ran before), trigger one."""
    client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
    client.patch(f"/dags/{AB_DAG_ID}", json={"is_paused": False}).raise_for_status()  # runs after each snapshot
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = client.get(f"/dags/{DAG_ID}/dagRuns", params={"state": ["queued", "running"]}).json()["dag_runs"]
        if runs:
            say(f"following {DAG_ID} run {runs[0]['dag_run_id']}, started by the scheduler")
            return runs[0]["dag_run_id"]
        time.sleep(3)
    run = client.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": dt.datetime.now(dt.UTC).isoformat()})
    run.raise_for_status()
    say(f"triggered {DAG_ID} run {run.json()['dag_run_id']}")
    return run.json()["dag_run_id"]


def follow(client: httpx.Client, run_id: str) -> str:
    """Print the run's progress until it ends; returns its final state."""
    started, last_line = time.monotonic(), ""
    while True:
        state = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        tasks = client.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
        instances = tasks["task_instances"]
        done = sum(ti["state"] == "success" for ti in instances)
        running = sorted({ti["task_id"] for ti in instances if ti["state"] == "running"})
        failed = sorted({ti["task_id"] for ti in instances if ti["state"] in ("failed", "upstream_failed")})
        line = (f"{state}: {done}/{len(instances)} task instances done"
                f"{'; running ' + ', '.join(running) if running else ''}"
                f"{'; failed ' + ', '.join(failed) if failed else ''}")  # fmt: skip
        if line != last_line:
            say(f"{line} ({time.monotonic() - started:.0f} s)")
            last_line = line
        if state in ("success", "failed"):
            return state
        time.sleep(5)


def sample_user(data_dir: Path) -> int:
    import duckdb

    current = (data_dir / "snapshots" / "CURRENT").read_text().strip()
    users = data_dir / "snapshots" / current / "users.parquet"
    return duckdb.sql(f"SELECT min(user_id) FROM '{users}'").fetchall()[0][0]


def admin_password(airflow_home: Path) -> str:
    return json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]


def bring_up(data_dir: Path, airflow_url: str, api_url: str, processes) -> None:
    """Run the nightly DAG if needed, wait until the API serves, print where everything is."""
    began = time.monotonic()
    wait_for("Airflow's health", lambda: httpx.get(f"{airflow_url}/api/v2/monitor/health", timeout=5).is_success,
             240, processes)  # fmt: skip
    client = airflow_client(airflow_url, data_dir / "airflow")
    for dag_id in (DAG_ID, AB_DAG_ID):
        parsed = lambda dag_id=dag_id: client.get(f"/dags/{dag_id}").is_success  # noqa: E731
        wait_for(f"the DAG processor to parse {dag_id}", parsed, 240, processes)
    if (data_dir / "snapshots" / "CURRENT").exists() and os.environ.get("RUN_NIGHTLY") != "1":
        say("a snapshot is already published: not running the nightly DAG (RUN_NIGHTLY=1 to run it anyway)")
    elif follow(client, start_nightly(client)) != "success":
        say(f"the nightly run failed: see the Airflow UI at {airflow_url} (task logs); Ctrl-C stops everything")
        return
    ready = wait_for("the API to serve the snapshot",
                     lambda: (r := httpx.get(f"{api_url}/ready", timeout=5)).is_success and r.json(), 120, processes)
    request = f"{api_url}/post/recommendations/?id={sample_user(data_dir)}&time={dt.datetime.now():%Y-%m-%dT%H:%M}"
    answer = httpx.get(request, timeout=30)
    say(f"ready ({time.monotonic() - began:.0f} s after the services started)")
    print(f"""
  Airflow UI   {airflow_url}   login admin / {admin_password(data_dir / "airflow")}
               DAG {DAG_ID}; the Recsys page: {airflow_url}/plugin/recsys
  lookup API   {api_url}   serving snapshot {ready['snapshot']} (models {ready['models_version']})
  sample       curl '{request}'
               -> HTTP {answer.status_code}: {answer.text[:300]}{'...' if len(answer.text) > 300 else ''}
  analysts     .venv/bin/recsys query "SELECT exp_group, count(*) FROM recommendations GROUP BY ALL"
  logs         {data_dir / "logs"}/

  Ctrl-C stops Airflow and the API.
""", flush=True)  # fmt: skip


def main() -> int:
    data_dir = Path(os.environ.get("RECSYS_DATA_DIR") or REPO / "data").resolve()
    airflow_port, api_port = int(os.environ.get("AIRFLOW_PORT", 8080)), int(os.environ.get("API_PORT", 8000))
    env = environment(data_dir, airflow_port, api_port)
    subprocess.run([BIN / "recsys", "generate", "--preset", "demo", "--seed", "1", "--keep-existing"], env=env,
                   check=True)  # fmt: skip
    api_log, airflow_log = data_dir / "logs" / "api.log", data_dir / "logs" / "airflow-standalone.log"
    api = start([str(BIN / "recsys"), "serve", "--port", str(api_port)], api_log, env)
    airflow = start([str(BIN / "airflow"), "standalone"], airflow_log, env)
    say(f"started the API (log {api_log}) and airflow standalone (log {airflow_log})")

    def stop(signum=None, frame=None, code: int = 0) -> None:
        say("stopping airflow standalone and the API ...")
        airflow.send_signal(signal.SIGINT)  # standalone stops its children only on SIGINT, sent to it alone
        api.send_signal(signal.SIGINT)
        for name, process in (("the API", api), ("airflow standalone", airflow)):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within 60 s: killing it")
                os.killpg(process.pid, signal.SIGKILL)
        say("stopped")
        sys.exit(code)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        bring_up(data_dir, f"http://127.0.0.1:{airflow_port}", f"http://127.0.0.1:{api_port}",
                 [(api, api_log), (airflow, airflow_log)])  # fmt: skip
    except Exception as error:
        say(f"{type(error).__name__}: {error}")
        stop(code=1)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
