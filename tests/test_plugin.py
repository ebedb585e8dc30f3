"""The Airflow plugin: loaded by Airflow's own plugin manager, light to import, and its page over real
artifacts (a published tiny snapshot with its evaluation), an empty data dir, the live API and A/B reports."""

import contextlib
import html
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from recsys import snapshot, training
from recsys.config import load_settings

REPO = Path(__file__).resolve().parents[1]
PLUGIN_FILE = REPO / "plugins" / "recsys_plugin.py"


@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location("recsys_plugin", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(plugin):
    """The plugin's app as the api-server mounts it, with the Airflow login taken as given."""
    app = plugin.create_app()
    app.dependency_overrides[app.state.login] = lambda: None
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def evaluated(served, tmp_path_factory):
    """A copy of the served data dir whose published models have been evaluated and gated: (env, data dir)."""
    env, source = served
    data_dir = tmp_path_factory.mktemp("plugin") / "data"
    shutil.copytree(source, data_dir, symlinks=True)
    env = {**env, "RECSYS_DATA_DIR": str(data_dir)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
        version_dir = settings.models_dir / training.current_version(settings)
        training.evaluate_version(version_dir, settings)
        training.gate_and_publish(version_dir, settings)
    return env, data_dir


@pytest.fixture
def settings(evaluated, monkeypatch):
    env, _ = evaluated
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RECSYS_API_URL", raising=False)
    return load_settings()


def section(page: str, title: str) -> str:
    """The HTML of one section of the page."""
    start = page.index(f"<h2>{title}</h2>")
    return page[start : page.index("</section>", start)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_python(code: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home"), **env}
    environment.pop("RECSYS_API_URL", None)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


# --- Airflow's side ------------------------------------------------------------------------------------
LOAD_THROUGH_AIRFLOW = """
import json
from airflow import plugins_manager
from airflow.api_fastapi.app import init_plugins
from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse
from fastapi import FastAPI
from fastapi.testclient import TestClient

infos = {info["name"]: info for info in plugins_manager.get_plugin_info()}
result = {"names": sorted(infos), "errors": plugins_manager.get_import_errors()}
if "recsys" in infos:
    # What GET /api/v2/plugins (which the UI reads to build its navigation) makes of it.
    result["response"] = PluginResponse.model_validate(infos["recsys"]).model_dump(mode="json")
app = FastAPI()
init_plugins(app)  # what the api-server does with every plugin's fastapi_apps
result["mounts"] = [route.path for route in app.routes if hasattr(route, "app")]
result["anonymous_status"] = TestClient(app).get("/recsys/").status_code
print("RESULT", json.dumps(result))
"""


def test_airflow_loads_the_plugin_and_mounts_its_app(tmp_path):
    done = run_python(LOAD_THROUGH_AIRFLOW, tmp_path, AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
                      AIRFLOW__CORE__LOAD_EXAMPLES="False", RECSYS_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["errors"] == {}
    assert "recsys" in result["names"], result
    response = result["response"]
    assert response["fastapi_apps"] == [{"app": "fastapi.applications.FastAPI", "url_prefix": "/recsys",
                                         "name": "recsys status"}]  # fmt: skip
    [view] = response["external_views"]
    assert (view["name"], view["href"], view["url_route"], view["destination"]) == \
        ("Recsys", "recsys/", "recsys", "nav")  # fmt: skip
    assert response["source"] == "$PLUGINS_FOLDER/recsys_plugin.py"
    assert "/recsys" in result["mounts"]
    assert result["anonymous_status"] == 401  # mounted, and behind the Airflow login like the rest of the UI


IMPORT_ONLY = f"""
import importlib.util, sys
import airflow.plugins_manager
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("recsys_plugin", {str(PLUGIN_FILE)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("NEW", " ".join(sorted(set(sys.modules) - before)))
"""


def test_importing_the_plugin_stays_light(tmp_path):
    """Every Airflow process (each task too) imports plugins: no FastAPI, pandas, matplotlib or recsys then."""
    done = run_python(IMPORT_ONLY, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    new = done.stdout.split("NEW", 1)[1].split()
    heavy = [name for name in new if name.split(".")[0] in
             ("fastapi", "starlette", "pandas", "numpy", "matplotlib", "recsys", "sklearn", "pyarrow")]  # fmt: skip
    assert heavy == [], heavy


def test_every_route_needs_an_airflow_login(plugin):
    with TestClient(plugin.create_app()) as anonymous:
        for path in ("/", "/evaluations/x/evaluation.png", "/ab/x/report.md"):
            assert anonymous.get(path).status_code == 401, path


# --- the page ------------------------------------------------------------------------------------------
def test_page_over_a_published_snapshot_with_its_evaluation(client, settings):
    version, snapshot_id = training.current_version(settings), snapshot.current_id(settings)
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text

    models = section(page, "Models and evaluation")
    assert version in models
    report = json.loads((settings.evaluations_dir / version / "evaluation.json").read_text())
    for method in ("popular", "random", "control", "test"):
        assert f"<td>{method}</td>" in models
    control = report["methods"]["control"]
    assert f"{control['replay_hit_rate']['mean']:.4f}" in models and f"{control['auc']:.4f}" in models
    assert "not the published one" not in models
    decisions = training.read_serving(settings.models_dir / version)
    assert f"best baseline: <code>{decisions['best_baseline']}</code>" in models
    for kind, decision in decisions["kinds"].items():
        assert f"<td>{kind}</td><td>{decision['served_by']}</td><td>{decision['fresh_served_by']}</td>" in models
        assert html.escape(decision["reason"]) in models
    chart = f"evaluations/{version}/evaluation.png"
    assert f'src="{chart}"' in models
    image = client.get(f"/{chart}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.content == (settings.evaluations_dir / version / "evaluation.png").read_bytes()

    shown = section(page, "Current snapshot")
    manifest = json.loads((settings.snapshots_dir / snapshot_id / "manifest.json").read_text())
    assert snapshot_id in shown and manifest["cutoff"] in shown and manifest["published_at"] in shown
    assert f"{manifest['users']:,}" in shown
    assert ("<th>served by</th><td>control: control (fresh users: control); test: test (fresh users: test)</td>"
            in shown)  # fmt: skip
    assert f"{sum(manifest['recommendation_rows'].values()):,}" in shown
    for group, count in manifest["ab"]["users"].items():
        assert f"{group}: {count:,}" in shown

    assert "RECSYS_API_URL is not set" in section(page, "Live API")
    assert "No A/B report yet" in section(page, "A/B report")


def test_a_newer_unpublished_evaluation_is_pointed_out(client, settings):
    version = training.current_version(settings)
    newer = f"{version}9"  # sorts after the published version, as a later attempt's name does
    shutil.copytree(settings.evaluations_dir / version, settings.evaluations_dir / newer)
    try:
        models = section(client.get("/").text, "Models and evaluation")
    finally:
        shutil.rmtree(settings.evaluations_dir / newer)
    assert f"The newest evaluated version, {newer}, is not the published one" in models


def test_chart_route_only_serves_evaluation_charts(client, tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data" / "evaluations").mkdir(parents=True)
    (tmp_path / "data" / "evaluation.png").write_bytes(b"\x89PNG\r\n\x1a\nnot under evaluations/")
    assert client.get("/evaluations/no-such-version/evaluation.png").status_code == 404
    response = client.get("/evaluations/%2E%2E/evaluation.png")  # reaches the route as version ".."
    assert response.status_code == 404 and response.text == "the chart of .. not found"


def test_empty_data_dir_says_nothing_is_published(client, tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("RECSYS_API_URL", raising=False)
    response = client.get("/")
    assert response.status_code == 200
    assert "No models published yet" in section(response.text, "Models and evaluation")
    assert "No snapshot published yet" in section(response.text, "Current snapshot")
    assert "No A/B report yet" in section(response.text, "A/B report")
    assert client.get("/evaluations/x/evaluation.png").status_code == 404


def test_invalid_settings_are_a_message_not_a_500(client, monkeypatch):
    monkeypatch.setenv("RECSYS_SHARDS", "zero")
    response = client.get("/")
    assert response.status_code == 200 and "RECSYS_SHARDS=&#x27;zero&#x27; is not an integer" in response.text
    assert client.get("/evaluations/x/evaluation.png").status_code == 503


def test_unreachable_api_is_reported_and_the_page_still_answers(client, settings, monkeypatch):
    port = free_port()  # closed once free_port returns: nothing listens there
    monkeypatch.setenv("RECSYS_API_URL", f"http://127.0.0.1:{port}/")
    started = time.monotonic()
    response = client.get("/")
    assert response.status_code == 200 and time.monotonic() - started < 20
    api = section(response.text, "Live API")
    assert f"The API at http://127.0.0.1:{port}/ready is unreachable" in api
    assert snapshot.current_id(settings) in section(response.text, "Current snapshot")


@contextlib.contextmanager
def live(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_live_api_ready_state_is_shown(client, settings, monkeypatch):
    """The real lookup API over the same data dir: the page shows what /ready says it serves."""
    from api.app import create_app as create_api

    with live(create_api(settings)) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline, "the API did not become ready"
            time.sleep(0.1)
        monkeypatch.setenv("RECSYS_API_URL", url)
        response = client.get("/")
    assert response.status_code == 200
    api = section(response.text, "Live API")
    snapshot_id = snapshot.current_id(settings)
    assert "<th>status</th><td>ready</td>" in api
    assert f"<th>snapshot</th><td>{snapshot_id}</td>" in api
    assert f"<th>models_version</th><td>{training.current_version(settings)}</td>" in api
    assert "<th>fresh_users</th>" in api and "<th>last_error</th><td>–</td>" in api
    assert "switches within" not in api  # the API serves the current snapshot


def test_api_not_ready_is_shown_with_its_reason(client, settings, monkeypatch):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ready(request):
        return JSONResponse({"ready": False, "reason": "snapshot <x> is corrupt"}, status_code=503)

    with live(Starlette(routes=[Route("/ready", ready)])) as url:
        monkeypatch.setenv("RECSYS_API_URL", url)
        response = client.get("/")
    assert response.status_code == 200
    assert "not ready (HTTP 503): snapshot &lt;x&gt; is corrupt" in section(response.text, "Live API")


def test_newest_ab_report_is_linked_served_and_escaped(client, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("RECSYS_DATA_DIR", str(data_dir))
    older, newer = data_dir / "reports" / "ab" / "2021-11-01", data_dir / "reports" / "ab" / "2021-11-02"
    for run in (older, newer):
        run.mkdir(parents=True)
        (run / "report.md").write_text(f"# A/B report {run.name}\n\ntest vs control: <b>+3.1%</b> & significant\n")
        (run / "uplift.png").write_bytes(b"\x89PNG\r\n\x1a\n" + run.name.encode())
    os.utime(older / "report.md", (time.time() - 3600, time.time() - 3600))

    page = client.get("/").text
    ab = section(page, "A/B report")
    assert "2021-11-02/report.md" in ab and "A/B report 2021-11-02" in ab and "2021-11-01" not in ab
    assert "&lt;b&gt;+3.1%&lt;/b&gt; &amp; significant" in ab and "<b>" not in ab
    assert 'href="ab/2021-11-02/report.md"' in ab and 'src="ab/2021-11-02/uplift.png"' in ab

    image = client.get("/ab/2021-11-02/uplift.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == b"\x89PNG\r\n\x1a\n2021-11-02"
    report = client.get("/ab/2021-11-02/report.md")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/plain")
    assert report.text.startswith("# A/B report 2021-11-02")
    # Only files under reports/ab, and only report-like ones.
    (data_dir / "secret.json").write_text("{}")
    assert client.get("/ab/..%2F..%2Fsecret.json").status_code == 404
    (newer / "notes.sh").write_text("echo hi\n")
    assert client.get("/ab/2021-11-02/notes.sh").status_code == 404
