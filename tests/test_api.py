"""The lookup API against a tiny snapshot: contract, groups, bad input, fresh users, swaps, exposures."""

import contextlib
import datetime as dt
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import httpx
import pandas as pd
import pytest
import uvicorn
from starlette.datastructures import QueryParams
from starlette.testclient import TestClient

from api.app import MAX_LIMIT, MAX_OFFSET, create_app, query_values
from api.snapshots import FreshScorer
from recsys import ab, precompute, snapshot
from tests.conftest import serve_test_group_by


@contextlib.contextmanager
def live_api(settings):
    """The app under a real uvicorn in a thread; stopped cleanly (lifespan shutdown) on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def client(served_copy):
    with TestClient(create_app(served_copy)) as test_client:
        yield test_client


def users_of(settings):
    return pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")


def test_contract_and_group(client, served_copy):
    user_id = int(users_of(served_copy)["user_id"].iloc[3])
    response = client.get("/post/recommendations/", params={"id": user_id, "time": "2021-10-15T10:00:00", "limit": 7})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"exp_group", "recommendations"}
    assert body["exp_group"] == ab.assign_group(user_id, served_copy.ab_salt, served_copy.ab_test_share)
    assert len(body["recommendations"]) == 7
    for post in body["recommendations"]:
        assert set(post) == {"id", "text", "topic"} and isinstance(post["id"], int) and post["text"]
    assert response.headers["x-model-version"] == snapshot.verify(snapshot.current_dir(served_copy))["models_version"]
    assert response.headers["x-served-by"] == body["exp_group"]  # each group's own model serves it
    default = client.get("/post/recommendations/", params={"id": user_id, "time": "2021-10-15T10:00:00"}).json()
    assert default["recommendations"] == body["recommendations"][:5]  # limit defaults to 5


def test_served_posts_are_the_precomputed_ranking(client, served_copy):
    current = snapshot.current_dir(served_copy)
    ranked = pd.read_parquet(current / "recommendations")
    user_id = int(ranked["user_id"].iloc[0])
    body = client.get("/post/recommendations/", params={"id": user_id, "limit": 10}).json()
    expected = ranked[ranked["user_id"] == user_id].sort_values("rank")["post_id"].head(10).tolist()
    assert [p["id"] for p in body["recommendations"]] == expected


def test_offset_pages_through_the_ranking_and_ends_empty(client, served_copy):
    ranked = pd.read_parquet(snapshot.current_dir(served_copy) / "recommendations")
    user_id = int(ranked["user_id"].iloc[0])
    expected = ranked[ranked["user_id"] == user_id].sort_values("rank")["post_id"].tolist()
    pages = [client.get("/post/recommendations/", params={"id": user_id, "limit": 5, "offset": offset}).json()
             for offset in range(0, len(expected) + 5, 5)]  # fmt: skip
    assert [p["id"] for page in pages for p in page["recommendations"]] == expected
    assert pages[-1]["recommendations"] == []  # past the precomputed list


def test_liked_posts_are_never_returned(client, served_copy):
    liked = pd.read_parquet(snapshot.current_dir(served_copy) / "liked.parquet")
    likers = liked["user_id"].value_counts().index[:40]
    assert len(likers) == 40
    for user_id in likers:
        body = client.get("/post/recommendations/", params={"id": int(user_id), "limit": 20}).json()
        shown = {p["id"] for p in body["recommendations"]}
        assert shown and not shown & set(liked.loc[liked["user_id"] == user_id, "post_id"])


def test_unknown_user_is_404(client):
    response = client.get("/post/recommendations/", params={"id": 10**12})
    assert response.status_code == 404 and response.json() == {"error": f"unknown user id {10**12}", "parameter": "id"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "id"),
        ({"id": "abc"}, "id"),
        ({"id": "1.5"}, "id"),
        ({"id": str(2**70)}, "id"),
        ({"id": "1", "time": "yesterday"}, "time"),
        ({"id": "1", "time": "2021-13-01T00:00"}, "time"),
        ({"id": "1", "limit": "0"}, "limit"),
        ({"id": "1", "limit": "101"}, "limit"),
        ({"id": "1", "limit": "five"}, "limit"),
        ({"id": "1", "offset": "-1"}, "offset"),
        ({"id": "1", "offset": "next"}, "offset"),
        # int() takes all of these; only ASCII digits with an optional leading "-" are an integer here
        ({"id": "٢٠٠"}, "id"),
        ({"id": "２００"}, "id"),
        ({"id": "2_00"}, "id"),
        ({"id": "+200"}, "id"),
        ({"id": " 200 "}, "id"),
        ({"id": "1", "limit": "٥"}, "limit"),
        ({"id": "1", "limit": " 5"}, "limit"),
        ({"id": "1", "offset": "+5"}, "offset"),
        ({"id": "1", "offset": "1_0"}, "offset"),
        # outside the years 1700..2199: a UTC conversion that overflows, or what a fresh user cannot be scored at
        ({"id": "1", "time": "0001-01-01T00:00:00+01:00"}, "time"),
        ({"id": "1", "time": "9999-12-31T23:59:59-01:00"}, "time"),
        ({"id": "1", "time": "1500-01-01T00:00"}, "time"),
        ({"id": "1", "time": "2300-01-01T00:00"}, "time"),
        ({"id": "1", "time": " 2021-10-15T10:00"}, "time"),
    ],
)
def test_bad_input_is_422_naming_the_parameter(client, params, parameter):
    response = client.get("/post/recommendations/", params=params)
    assert response.status_code == 422
    assert response.json()["parameter"] == parameter and parameter in response.json()["error"]


@pytest.mark.parametrize("path", ["/nope", "/health/", "/post", "/post/recommendations/extra"])
def test_an_unknown_path_is_a_json_404(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 404 and response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"no such path {path}: see /openapi.json"}


def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(client):
    response = client.post("/post/recommendations/", params={"id": 1})
    allowed = response.headers["allow"]  # Starlette keeps a route's methods in a set: in no set order
    assert response.status_code == 405 and set(allowed.split(", ")) == {"GET", "HEAD"}
    assert response.json() == {"error": f"method POST is not allowed here (allowed: {allowed})"}


def test_the_recommendations_path_answers_the_same_without_its_trailing_slash(client, served_copy):
    params = {"id": int(users_of(served_copy)["user_id"].iloc[0]), "time": "2021-10-15T10:00:00"}
    with_slash = client.get("/post/recommendations/", params=params)
    without = client.get("/post/recommendations", params=params, follow_redirects=False)
    assert without.status_code == with_slash.status_code == 200 and without.json() == with_slash.json()
    assert client.get("/post/recommendations", params={"id": "x"}).json()["parameter"] == "id"


def test_a_long_query_is_a_json_414_and_a_huge_one_is_refused_by_uvicorn(client, served_copy):
    long_query = f"/post/recommendations/?id=1&pad={'a' * 20_000}"
    response = client.get(long_query)
    assert response.status_code == 414 and response.json() == {"error": "the query string is longer than 4096 bytes"}
    with live_api(served_copy) as (base, _), socket.create_connection(base.removeprefix("http://").split(":")) as conn:
        conn.sendall(f"GET /post/recommendations/?id=1&pad={'a' * 1_000_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status_line = conn.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 400 Bad Request"  # before the app: uvicorn's own plain-text answer


def test_an_unexpected_failure_is_a_json_500(served_copy, monkeypatch):
    app = create_app(served_copy)
    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.state.watcher.current, "lookup", lambda *args: 1 / 0)  # a bug
        response = client.get("/post/recommendations/", params={"id": 1})
    assert response.status_code == 500 and response.json() == {"error": "internal server error"}


def test_openapi_describes_what_is_enforced(client):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/post/recommendations/"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert parameters["offset"]["maximum"] == MAX_OFFSET and parameters["limit"]["maximum"] == MAX_LIMIT
    assert {parameters[name]["pattern"] for name in ("id", "limit", "offset")} == {"^-?[0-9]+$"}
    assert parameters["time"]["pattern"] == "^(1[7-9]|2[01])[0-9]{2}"
    components = schema["components"]["schemas"]
    body = {status: response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for status, response in operation["responses"].items()}  # fmt: skip
    assert body == {"200": "Recommendations", "404": "Error", "414": "Error", "422": "Error", "503": "Error"}
    assert components["Recommendations"]["properties"]["exp_group"]["enum"] == ["control", "test"]
    assert set(components["Error"]["properties"]) == {"error", "parameter"}
    for path in ("/health", "/ready"):
        assert all("content" in response for response in schema["paths"][path]["get"]["responses"].values()), path
    assert ": null" not in json.dumps(schema)  # a YAML colon or comma in a docstring makes a stray key: null


@pytest.mark.parametrize(
    "query_string",
    [b"", b"id=1", b"id=1&time=2021-10-15T12%3A00%3A00%2B03%3A00&limit=5", b"id=1&id=2", b"id", b"id=&limit=3",
     b"a=1&&b=2", b"time=2021-10-15+12:00", b"name%20x=caf%C3%A9", b"bad=%E9", b"q=a=b"],
)  # fmt: skip
def test_query_values_decode_as_starlette_does(query_string):
    assert query_values(query_string) == dict(QueryParams(query_string))


def test_a_quoted_time_with_an_offset_is_understood(client, served_copy):
    user_id = int(users_of(served_copy)["user_id"].iloc[0])
    response = client.get(f"/post/recommendations/?id={user_id}&time=2021-10-15T15%3A00%3A00%2B03%3A00")
    assert response.status_code == 200 and len(response.json()["recommendations"]) == 5


def test_fresh_user_is_scored_on_the_fly(served_copy, monkeypatch, tmp_path):
    """A user who signs up after the batch is in the source but not in the snapshot."""
    source = tmp_path / "source.duckdb"
    shutil.copy(served_copy.source_url.removeprefix("duckdb:///"), source)
    monkeypatch.setenv("RECSYS_SOURCE_URL", f"duckdb:///{source}")
    from recsys.config import load_settings

    settings = load_settings()
    app = create_app(settings)
    params = {"id": 999999999, "time": "2021-10-15 21:00", "limit": 8}
    with TestClient(app) as client:
        assert client.get("/post/recommendations/", params=params).status_code == 404
        with duckdb.connect(str(source)) as con:  # signs up while the API runs
            con.execute("INSERT INTO user_data SELECT 999999999, gender, age, country, city, exp_group, os, source "
                        "FROM user_data ORDER BY user_id LIMIT 1")  # fmt: skip
        app.state.watcher.refresh_fresh_users()  # what the watcher thread does every RECSYS_RELOAD_SECONDS
        response = client.get("/post/recommendations/", params=params)
        assert response.status_code == 200
        body = response.json()
        assert client.get("/ready").json()["fresh_users"] == 1
    assert body["exp_group"] == ab.assign_group(999999999, settings.ab_salt, settings.ab_test_share)
    assert len(body["recommendations"]) == 8 and len({p["id"] for p in body["recommendations"]}) == 8
    with TestClient(app) as client:
        page = client.get("/post/recommendations/", params={**params, "limit": 4, "offset": 4}).json()
    assert [p["id"] for p in page["recommendations"]] == [p["id"] for p in body["recommendations"]][4:]


def test_fresh_users_are_reread_only_when_the_source_changed(served_copy, monkeypatch, tmp_path):
    """The watcher runs beside requests: while user_data is unchanged it reads one summary row."""
    from recsys.config import load_settings
    from recsys.sources import DuckDBSource

    source = tmp_path / "source.duckdb"
    shutil.copy(served_copy.source_url.removeprefix("duckdb:///"), source)
    monkeypatch.setenv("RECSYS_SOURCE_URL", f"duckdb:///{source}")
    app = create_app(load_settings())
    with TestClient(app):
        watcher = app.state.watcher
        reads = []
        read_ids = DuckDBSource.user_ids
        monkeypatch.setattr(DuckDBSource, "user_ids", lambda self: reads.append(1) or read_ids(self))
        watcher.refresh_fresh_users()
        assert reads == [] and watcher.fresh_users == {}
        with duckdb.connect(str(source)) as con:
            con.execute("INSERT INTO user_data SELECT 999999999, gender, age, country, city, exp_group, os, source "
                        "FROM user_data ORDER BY user_id LIMIT 1")  # fmt: skip
        watcher.refresh_fresh_users()
        assert reads == [1] and list(watcher.fresh_users) == [999999999]
        assert watcher.fresh_users[999999999]["cohort"]  # computed here, not per request


def test_fresh_user_is_ranked_as_precompute_ranks_a_user_without_history(served_copy):
    """Same model, features and cohort candidates as the nightly ranking (a candidate stage of 40
    posts, so that it is exercised), and candidates ready from the moment the snapshot loads."""
    folder = snapshot.current_dir(served_copy)
    users = users_of(served_copy)
    manifest = snapshot.verify(folder)
    kind = manifest["group_models"]["test"]
    cohorts = users.sort_values("user_id").drop_duplicates("cohort")
    scorer = FreshScorer(folder, kind, kind, 40, cohorts)
    newcomer = users.iloc[[7]].drop(columns=["group", "shard"])
    assert newcomer["cohort"].iloc[0] in scorer._by_cohort
    as_of = dt.date.fromisoformat(manifest["as_of"])
    no_likes = pd.DataFrame({"user_id": [], "post_id": []})
    expected = precompute.rank_users(scorer.model, kind, scorer.serving, newcomer, no_likes, as_of, top_k=40,
                                     buckets=1, candidates=40)  # fmt: skip
    when = pd.Timestamp(as_of) + pd.Timedelta(hours=precompute.bucket_hours(1)[0])
    ranked = scorer.rank(newcomer.iloc[0].to_dict(), when)
    assert len(ranked) == 40 and ranked.tolist() == expected["post_id"].tolist()
    unseen = {**newcomer.iloc[0].to_dict(), "cohort": "a cohort the snapshot does not know"}
    assert len(scorer.rank(unseen, when)) == 40 and unseen["cohort"] in scorer._by_cohort


def test_health_ready_and_openapi(client, served_copy):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["exposures"]["healthy"] is True
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["snapshot"] == snapshot.current_id(served_copy)
    schema = client.get("/openapi.json").json()
    assert "/post/recommendations/" in schema["paths"]


def test_not_ready_without_a_snapshot(served_copy):
    (served_copy.snapshots_dir / snapshot.CURRENT).unlink()
    with TestClient(create_app(served_copy)) as client:
        assert client.get("/ready").status_code == 503
        response = client.get("/post/recommendations/", params={"id": 1})
        assert response.status_code == 503 and "no snapshot published" in response.json()["error"]


def test_snapshot_swap_under_concurrent_requests_has_no_errors(served_copy):
    user_ids = users_of(served_copy)["user_id"].head(50).tolist()
    old = snapshot.current_id(served_copy)
    with live_api(served_copy) as (url, app):
        stop = threading.Event()

        def hammer(worker):
            statuses, versions = [], set()
            with httpx.Client(base_url=url, timeout=10) as http:
                i = 0
                while not stop.is_set() or i < 20:
                    response = http.get("/post/recommendations/", params={"id": user_ids[(worker + i) % 50]})
                    statuses.append(response.status_code)
                    versions.add(response.headers.get("x-snapshot"))
                    i += 1
            return statuses, versions

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer, w) for w in range(4)]
            new = precompute.run(served_copy)
            app.state.watcher.check()  # what the watcher thread does every RECSYS_RELOAD_SECONDS
            time.sleep(0.3)
            stop.set()
            results = [f.result() for f in futures]
        statuses = [s for r, _ in results for s in r]
        assert len(statuses) > 80 and set(statuses) == {200}
        assert {v for _, r in results for v in r} <= {old, new}
        assert httpx.get(f"{url}/ready").json()["snapshot"] == new
        assert snapshot.wait_until_served(url, new, timeout=5)["snapshot"] == new  # the DAG's last task


def test_a_corrupt_snapshot_is_refused_and_the_old_one_keeps_serving(served_copy):
    with live_api(served_copy) as (url, app):
        old = httpx.get(f"{url}/ready").json()["snapshot"]
        staging = precompute.stage(served_copy)
        for group, shard in precompute.shards_of(staging):
            precompute.run_shard(staging, group, shard)
        new = snapshot.publish(staging, served_copy)
        damaged = snapshot.shard_file(served_copy.snapshots_dir / new, "test", 0)
        damaged.write_bytes(damaged.read_bytes()[:100])
        app.state.watcher.check()
        ready = httpx.get(f"{url}/ready").json()
        assert ready["snapshot"] == old and f"snapshot {new} refused" in ready["last_error"]
        with pytest.raises(snapshot.SnapshotError, match=f"did not pick up snapshot {new} .*: serving {old}"):
            snapshot.wait_until_served(url, new, timeout=1)
        user_id = int(users_of(served_copy)["user_id"].iloc[0])
        assert httpx.get(f"{url}/post/recommendations/", params={"id": user_id}).status_code == 200


def test_every_response_is_an_exposure_after_a_clean_shutdown(served_copy):
    user_ids = users_of(served_copy)["user_id"].head(30).tolist()
    served = {}
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with live_api(served_copy) as (url, _), httpx.Client(base_url=url) as http:
        for i in range(300):
            user_id = user_ids[i % 30]
            response = http.get("/post/recommendations/", params={"id": user_id, "time": f"2021-10-{15 + i % 3}T12:00"})
            served[response.headers["x-request-id"]] = (user_id, [p["id"] for p in response.json()["recommendations"]])
    # The API has shut down: everything is on disk, readable with DuckDB.
    log = duckdb.sql(
        f"SELECT * FROM read_parquet('{served_copy.exposures_dir}/*/*.parquet', hive_partitioning = true)"
    ).df()
    assert len(log) == 300 and set(log["request_id"]) == set(served)
    assert log["served_at"].between(started, dt.datetime.now(dt.UTC).replace(tzinfo=None)).all()
    for row in log.itertuples():
        assert (row.user_id, list(row.post_ids)) == served[row.request_id]
    assert sorted(log["time"].dt.date.astype(str).unique()) == ["2021-10-15", "2021-10-16", "2021-10-17"]
    assert (pd.to_datetime(log["day"]) == log["served_at"].dt.normalize()).all()  # the server's clock decides
    assert (log["served_by"] == log["exp_group"]).all()  # each group's own model served it


def test_head_answers_like_get_without_a_body_and_is_not_an_exposure(served_copy):
    user_id = int(users_of(served_copy)["user_id"].iloc[0])
    with TestClient(create_app(served_copy)) as client:
        response = client.head("/post/recommendations/", params={"id": user_id})
        assert response.status_code == 200 and response.content == b"" and response.headers["x-request-id"]
    assert not list(served_copy.exposures_dir.glob("day=*/*.parquet"))


def wait_for_status(client, path: str, status: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (response := client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} did not answer {status} within {timeout} s: {response.text}"
        time.sleep(0.1)
    return response


def test_health_is_503_while_exposures_cannot_be_written_and_200_once_they_can(served_copy):
    blocker = served_copy.exposures_dir / f"day={dt.datetime.now(dt.UTC).date()}"  # where today's rows go
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way")
    user_id = int(users_of(served_copy)["user_id"].iloc[0])
    with TestClient(create_app(served_copy)) as client:
        assert client.get("/post/recommendations/", params={"id": user_id}).status_code == 200
        failing = wait_for_status(client, "/health", 503).json()
        assert failing["status"] == "failing" and "day=" in failing["exposures"]["error"]
        assert str(served_copy.data_dir) not in failing["exposures"]["error"]
        assert client.get("/ready").json()["exposures"]["healthy"] is False
        blocker.unlink()
        healthy = wait_for_status(client, "/health", 200).json()
        assert healthy["exposures"]["written"] == 1 and healthy["exposures"]["failed_writes"] > 0


def user_of_group(group: str, settings) -> int:
    """An id outside the snapshot's users that the A/B split puts in the group."""
    candidates = range(900_000_000, 900_001_000)
    return next(u for u in candidates if ab.assign_group(u, settings.ab_salt, settings.ab_test_share) == group)


def test_a_group_served_by_a_baseline_answers_with_it_and_logs_it(served_copy, monkeypatch, tmp_path):
    """The gate put popular in the test model's place: known and fresh users of the test group get
    popular's ranking, named in X-Served-By, /ready and the exposure log; control keeps its model."""
    serve_test_group_by(served_copy, "popular")
    published = precompute.run(served_copy)
    ranked = pd.read_parquet(served_copy.snapshots_dir / published / "recommendations")
    users = pd.read_parquet(served_copy.snapshots_dir / published / "users.parquet")
    known = {group: int(users.loc[users["group"] == group, "user_id"].iloc[0]) for group in ("control", "test")}
    newcomer = user_of_group("test", served_copy)
    source = tmp_path / "source.duckdb"
    shutil.copy(served_copy.source_url.removeprefix("duckdb:///"), source)
    with duckdb.connect(str(source)) as con:
        con.execute(f"INSERT INTO user_data SELECT {newcomer}, gender, age, country, city, exp_group, os, source "
                    "FROM user_data ORDER BY user_id LIMIT 1")  # fmt: skip
    monkeypatch.setenv("RECSYS_SOURCE_URL", f"duckdb:///{source}")
    from recsys.config import load_settings

    settings = load_settings()
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready").json()
        assert ready["snapshot"] == published and ready["fresh_users"] == 1
        assert ready["group_methods"] == ready["fresh_methods"] == {"control": "control", "test": "popular"}
        answers = {name: client.get("/post/recommendations/", params={"id": user, "time": "2021-10-15T12:00"})
                   for name, user in {**known, "fresh": newcomer}.items()}  # fmt: skip
    served_by = {name: (answer.status_code, answer.headers["x-served-by"]) for name, answer in answers.items()}
    assert served_by == {"control": (200, "control"), "test": (200, "popular"), "fresh": (200, "popular")}
    shown = [p["id"] for p in answers["test"].json()["recommendations"]]
    assert shown == ranked[ranked["user_id"] == known["test"]].sort_values("rank")["post_id"].head(5).tolist()
    log = duckdb.sql(f"SELECT user_id, exp_group, fresh_user, served_by FROM read_parquet("
                     f"'{settings.exposures_dir}/*/*.parquet') ORDER BY served_at").fetchall()  # fmt: skip
    assert log == [(known["control"], "control", False, "control"), (known["test"], "test", False, "popular"),
                   (newcomer, "test", True, "popular")]  # fmt: skip


def test_a_fresh_user_of_a_baseline_served_group_is_ranked_by_the_baseline(served_copy):
    """The same ranking precompute gives a user without history of a group the baseline serves."""
    folder = snapshot.current_dir(served_copy)
    users = users_of(served_copy)
    manifest = snapshot.verify(folder)
    cohorts = users.sort_values("user_id").drop_duplicates("cohort")
    scorer = FreshScorer(folder, "popular", "test", 40, cohorts)
    assert scorer.model is None
    newcomer = users.iloc[[7]].drop(columns=["group", "shard"])
    as_of = dt.date.fromisoformat(manifest["as_of"])
    no_likes = pd.DataFrame({"user_id": [], "post_id": []})
    expected = precompute.rank_users(None, "popular", scorer.serving, newcomer, no_likes, as_of, top_k=40, buckets=1,
                                     candidates=40)  # fmt: skip
    ranked = scorer.rank(newcomer.iloc[0].to_dict(), pd.Timestamp(as_of) + pd.Timedelta(hours=12))
    assert ranked.tolist() == expected["post_id"].tolist()
    candidates = scorer._by_cohort[newcomer["cohort"].iloc[0]]
    frame = scorer.serving.features(newcomer, candidates[None, :], pd.Timestamp(as_of))
    rates = dict(zip(scorer.post_ids[candidates], frame["post_like_rate"], strict=True))
    assert [rates[post] for post in ranked] == sorted(rates.values(), reverse=True)  # popular's order
