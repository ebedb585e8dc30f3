"""Airflow plugin: a "Recsys" page in the Airflow UI for what the nightly DAG leaves behind.

One server-rendered page (no JavaScript) shows, read fresh from ``RECSYS_DATA_DIR`` on every request:

- the published models version (``models/CURRENT``), the gate's decisions (model or best baseline per model
  kind, with the numbers and the reason), its evaluation table (every method × metric) and chart;
- the current snapshot's manifest: id, models version, what serves each group, cutoff, users, recommendation
  rows, A/B split;
- the live API's ``/ready`` answer when ``RECSYS_API_URL`` is set;
- the newest A/B report under ``reports/ab/`` with the charts beside it.

Airflow mounts the FastAPI app at ``/recsys/`` in the api-server, and the external view puts a "Recsys"
entry in the UI navigation that shows the page inside the UI (``/plugin/recsys``). The page requires an
Airflow login, like the rest of the UI. A missing artifact is a message on the page, never an error.

Airflow imports plugins in every process (scheduler, DAG processor, each task), so this module imports
only the standard library and ``AirflowPlugin``: FastAPI, httpx, pandas and ``recsys`` are imported
when the api-server builds the app or when a request needs them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import html
import logging
from pathlib import Path
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/recsys"
API_TIMEOUT_SECONDS = 2.0
REPORT_CHARS = 60_000
# Files of an A/B report folder the page may link to and serve, with their media types.
AB_MEDIA_TYPES = {".md": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
                  ".csv": "text/plain; charset=utf-8", ".json": "application/json", ".png": "image/png"}  # fmt: skip

e = html.escape


# --- helpers ------------------------------------------------------------------------------------------
def _inside(root: Path, *parts: str) -> Path | None:
    """root/parts if it is an existing file that stays under root (no ``..`` or symlink escapes)."""
    root = root.resolve()
    target = root.joinpath(*parts).resolve()
    return target if target.is_relative_to(root) and target.is_file() else None


def _ab_root(settings) -> Path:
    return settings.data_dir / "reports" / "ab"


def _number(value, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return f"{value:.{digits}f}"


def _kv_table(pairs) -> str:
    rows = "".join(f"<tr><th>{e(str(key))}</th><td>{e(str(value))}</td></tr>" for key, value in pairs)
    return f'<table class="kv">{rows}</table>'


def _note(text: str, kind: str = "note") -> str:
    return f'<p class="{kind}">{e(text)}</p>'


def _section(title: str, render, *args) -> str:
    """A section of the page; an unexpected failure becomes a message in it, never a 500."""
    try:
        body = render(*args)
    except Exception as error:  # the page must show the other sections whatever one of them meets
        log.exception("recsys plugin: the %s section failed", title)
        body = _note(f"Could not read this: {type(error).__name__}: {error}", "error")
    return f"<section><h2>{e(title)}</h2>{body}</section>"


# --- sections -----------------------------------------------------------------------------------------
def _evaluation_table(report: dict) -> str:
    from recsys import evaluate

    rows = evaluate.report_rows(report)
    header = ("method", "replay HR@5", "95% CI", "AUC", "NDCG@5", "served HR@5", "expected HR@5", "of oracle")
    body = []
    for row in rows.itertuples(index=False):
        cells = [row.method, _number(row.replay_hit_rate),
                 f"{_number(row.replay_ci_low)} – {_number(row.replay_ci_high)}", _number(row.auc),
                 _number(row.ndcg), _number(row.served_hit_rate), _number(row.expected_hit_rate),
                 _number(row.share_of_oracle, 3)]  # fmt: skip
        served = ' class="served"' if row.method in ("control", "test") else ""
        body.append(f"<tr{served}>" + "".join(f"<td>{e(str(cell))}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{e(name)}</th>" for name in header)
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _serving_table(decisions: dict) -> str:
    """The gate's decision per model kind: what serves its groups' known and fresh users, and why."""
    header = ("model", "served by", "fresh users served by", "served HR@5", "best baseline HR@5",
              "difference [95% CI]", "users", "reason")  # fmt: skip
    body = []
    for kind, decision in decisions["kinds"].items():
        low, high = decision["ci95"] or [None, None]
        reasons = [decision["reason"]] + ([decision["fresh"]["reason"]] if decision["fresh"] else [])
        cells = [kind, decision["served_by"], decision["fresh_served_by"], _number(decision["hit_rate"]),
                 _number(decision["baseline_hit_rate"]),
                 f"{_number(decision['difference'])} [{_number(low)}, {_number(high)}]", decision["users"],
                 "; ".join(reasons)]  # fmt: skip
        failed = "" if decision["passed"] else ' class="warn"'
        body.append(f"<tr{failed}>" + "".join(f"<td>{e(str(cell))}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{e(name)}</th>" for name in header)
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def models_section(settings) -> str:
    from recsys import training
    from recsys.files import read_json

    version = training.current_version(settings)
    evaluated = sorted(p.parent.name for p in settings.evaluations_dir.glob("*/evaluation.json"))
    parts = []
    if version is None:
        parts.append(_note("No models published yet (models/CURRENT does not exist): the nightly DAG publishes "
                           "each version its quality gate has decided on."))  # fmt: skip
    else:
        parts.append(f"<p>Published version: <code>{e(version)}</code></p>")
        decisions = training.read_serving(settings.models_dir / version)
        if decisions is None:
            parts.append(_note(f"{version} has no gate decisions (serving.json): each model serves its groups."))
        else:
            parts.append(f"<p>What serves each model's groups (best baseline: "
                         f"<code>{e(decisions['best_baseline'])}</code>):</p>")  # fmt: skip
            parts.append(_serving_table(decisions))
        evaluation = settings.evaluations_dir / version / "evaluation.json"
        if not evaluation.exists():
            parts.append(_note(f"No evaluation of {version} yet ({evaluation} does not exist)."))
        else:
            report = read_json(evaluation)
            split, replay, served = report.get("split", {}), report.get("replay", {}), report.get("served", {})
            test = split.get("test") or ["?", "?"]
            random_hr = replay.get("random_expected_replay_hit_rate", {}).get("mean")
            parts.append(f"<p>Test days {e(str(test[0]))} … {e(str(test[1]))}: {e(str(replay.get('groups', '?')))} "
                         f"user-days replayed, {e(str(served.get('users', '?')))} users served; a random ranking's "
                         f"exact replay HR@5 is {e(_number(random_hr))}.</p>")  # fmt: skip
            parts.append(_evaluation_table(report))
            if (evaluation.parent / "evaluation.png").exists():
                src = f"evaluations/{quote(version)}/evaluation.png"
                parts.append(f'<p><img src="{e(src)}" alt="evaluation chart of {e(version)}"></p>')
            else:
                parts.append(_note("The evaluation has no chart (evaluation.png is missing)."))
    if evaluated and evaluated[-1] != version:
        parts.append(_note(f"The newest evaluated version, {evaluated[-1]}, is not the published one: its run "
                           "stopped before the quality gate published it (see the nightly DAG's task logs).",
                           "warn"))  # fmt: skip
    return "".join(parts)


def snapshot_section(settings, models_version: str | None) -> str:
    from recsys import snapshot
    from recsys.files import read_json

    snapshot_id = snapshot.current_id(settings)
    if snapshot_id is None:
        return _note("No snapshot published yet (snapshots/CURRENT does not exist): the API has nothing to serve "
                     "until the nightly DAG's publish task runs.")  # fmt: skip
    manifest_path = settings.snapshots_dir / snapshot_id / snapshot.MANIFEST
    if not manifest_path.exists():
        return _note(f"snapshots/CURRENT names {snapshot_id}, but {manifest_path} does not exist.", "error")
    manifest = read_json(manifest_path)
    ab = manifest.get("ab") or {}
    groups = ", ".join(f"{group}: {count:,}" for group, count in sorted((ab.get("users") or {}).items()))
    group_models = manifest.get("group_models") or {}
    known, fresh = manifest.get("group_methods", group_models), manifest.get("fresh_methods", group_models)
    served = "; ".join(f"{group}: {known[group]} (fresh users: {fresh[group]})" for group in sorted(group_models))
    pairs = [
        ("snapshot", snapshot_id),
        ("models version", manifest.get("models_version", "–")),
        ("served by", served or "–"),
        ("cutoff", manifest.get("cutoff", "–")),
        ("users", f"{manifest.get('users', 0):,}"),
        ("recommendation rows", f"{sum((manifest.get('recommendation_rows') or {}).values()):,}"),
        ("published at", manifest.get("published_at", "–")),
        ("A/B split", f"test share {ab.get('test_share', '–')}, salt {ab.get('salt', '–')}; {groups or 'no groups'}"),
        ("kept for rollback", ", ".join(s for s in snapshot.published(settings) if s != snapshot_id) or "none"),
    ]
    parts = [_kv_table(pairs)]
    if models_version and manifest.get("models_version") not in (None, models_version):
        parts.append(_note(f"The snapshot was precomputed from models {manifest.get('models_version')}; the published "
                           f"models {models_version} are served after the next precompute.", "warn"))  # fmt: skip
    return "".join(parts)


def api_section(settings, snapshot_id: str | None) -> str:
    if not settings.api_url:
        return _note("RECSYS_API_URL is not set, so this page cannot ask the API whether it is ready. Set it in "
                     "the api-server's environment (e.g. http://localhost:8000).")  # fmt: skip
    import httpx

    url = f"{settings.api_url}/ready"
    try:
        response = httpx.get(url, timeout=API_TIMEOUT_SECONDS)
    except Exception as error:  # connection refused, timeout, bad URL: all mean "cannot tell"
        return _note(f"The API at {url} is unreachable: {type(error).__name__}: {error}", "error")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return _note(f"The API at {url} answered HTTP {response.status_code} without a JSON object.", "error")
    ready = response.status_code == 200 and body.get("ready") is True
    status = "ready" if ready else f"not ready (HTTP {response.status_code}): {body.get('reason', '?')}"
    shown = ("snapshot", "models_version", "users", "fresh_users", "loaded_at", "last_error", "source_error")
    pairs = [("URL", url), ("status", status)]
    pairs += [(key, "–" if body[key] is None else body[key]) for key in shown if key in body]
    pairs += [(key, value) for key, value in body.items() if key not in shown and key not in ("ready", "reason")]
    parts = [_kv_table(pairs)]
    if ready and snapshot_id and body.get("snapshot") != snapshot_id:
        parts.append(_note(f"The API serves {body.get('snapshot')} but the current snapshot is {snapshot_id}: it "
                           "switches within RECSYS_RELOAD_SECONDS, or check its last_error.", "warn"))  # fmt: skip
    return "".join(parts)


def newest_ab_report(settings) -> Path | None:
    root = _ab_root(settings)
    if not root.is_dir():
        return None
    reports = [p for p in (*root.glob("*/report.md"), *root.glob("*.md")) if p.is_file()]
    return max(reports, key=lambda p: (p.stat().st_mtime, str(p)), default=None)


def ab_section(settings) -> str:
    report = newest_ab_report(settings)
    if report is None:
        return _note(f"No A/B report yet (none under {_ab_root(settings)}): the A/B report DAG writes them there.")
    root = _ab_root(settings)

    def link(path: Path) -> str:
        return "ab/" + quote(path.relative_to(root).as_posix())

    written = dt.datetime.fromtimestamp(report.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
    beside = sorted(p for p in report.parent.iterdir() if p.is_file() and p.suffix.lower() in AB_MEDIA_TYPES
                    and (p.suffix.lower() != ".md" or p == report))  # fmt: skip
    if report.parent == root:  # a top-level report.md: only the charts named after it belong to it
        beside = [p for p in beside if p == report or p.stem.startswith(report.stem)]
    files = " · ".join(f'<a href="{e(link(p))}">{e(p.name)}</a>' for p in beside)
    parts = [f"<p>Newest report: <code>{e(report.relative_to(root).as_posix())}</code>, written {e(written)}. "
             f"Files: {files}</p>"]  # fmt: skip
    parts += [f'<p><img src="{e(link(p))}" alt="{e(p.name)}"></p>' for p in beside if p.suffix.lower() == ".png"]
    text = report.read_text(errors="replace")
    if len(text) > REPORT_CHARS:
        text = text[:REPORT_CHARS] + "\n… (truncated: open the file for the rest)"
    parts.append(f"<pre>{e(text)}</pre>")
    return "".join(parts)


# --- the page and the app -----------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0; } th, td { padding: .25rem .6rem; text-align: left; }
table.grid th, table.grid td { border: 1px solid #d0d7de; } table.grid td { font-variant-numeric: tabular-nums; }
table.kv th { color: #57606a; font-weight: normal; } tr.served { background: #f0f6ff; }
img { max-width: 100%; } pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; }
.note { color: #57606a; } .warn { color: #9a6700; } .error { color: #cf222e; }
"""


def render_page() -> str:
    """The whole page, read fresh from the artifacts (settings from the environment of this request)."""
    from recsys.config import ConfigError, load_settings

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    try:
        settings = load_settings()
    except ConfigError as error:
        sections = _note(f"The RECSYS_* settings are invalid: {error}", "error")
        data_dir = "?"
    else:
        from recsys import snapshot, training

        data_dir = str(settings.data_dir)
        models_version = snapshot_id = None
        with contextlib.suppress(OSError):  # each section says what it cannot read
            models_version, snapshot_id = training.current_version(settings), snapshot.current_id(settings)
        sections = "".join([
            _section("Models and evaluation", models_section, settings),
            _section("Current snapshot", snapshot_section, settings, models_version),
            _section("Live API", api_section, settings, snapshot_id),
            _section("A/B report", ab_section, settings),
        ])  # fmt: skip
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Recsys</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><h1>Recsys: models, snapshot, API, A/B</h1>"
            f'<p class="note">RECSYS_DATA_DIR {e(data_dir)} · read at {e(now)}</p>'
            f"{sections}</body></html>")  # fmt: skip


def create_app():
    """The FastAPI app Airflow's api-server mounts at /recsys (every route needs an Airflow login)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

    login = requires_authenticated()
    app = FastAPI(title="recsys status", dependencies=[Depends(login)], docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.login = login  # so a test can override it

    def settings():
        from recsys.config import ConfigError, load_settings

        try:
            return load_settings()
        except ConfigError as error:  # the page explains it; a file route can only refuse
            raise HTTPException(503, f"invalid RECSYS_* settings: {error}") from None

    def not_found(what: str) -> PlainTextResponse:
        return PlainTextResponse(f"{what} not found", status_code=404)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(), headers={"cache-control": "no-store"})

    @app.get("/evaluations/{version}/evaluation.png")
    def evaluation_chart(version: str):
        path = _inside(settings().evaluations_dir, version, "evaluation.png")
        return FileResponse(path, media_type="image/png") if path else not_found(f"the chart of {version}")

    @app.get("/ab/{name:path}")
    def ab_file(name: str):
        path = _inside(_ab_root(settings()), name)
        if path is None or path.suffix.lower() not in AB_MEDIA_TYPES:
            return not_found(name)
        return FileResponse(path, media_type=AB_MEDIA_TYPES[path.suffix.lower()])

    return app


_app = functools.cache(create_app)


class RecsysPlugin(AirflowPlugin):
    name = "recsys"
    # An entry in the UI navigation that shows the page inside the UI at /plugin/recsys. The href is
    # relative (no leading slash), so it resolves under the UI's base URL, as the app's mount does.
    external_views = [{
        "name": "Recsys",
        "href": f"{URL_PREFIX.lstrip('/')}/",
        "url_route": "recsys",
        "destination": "nav",
        "nav_top_level": True,
    }]  # fmt: skip

    @property
    def fastapi_apps(self) -> list[dict]:
        """Built on first use (only the api-server asks), so other processes never import FastAPI for it."""
        return [{"app": _app(), "url_prefix": URL_PREFIX, "name": "recsys status"}]
