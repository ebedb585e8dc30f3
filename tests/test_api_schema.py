"""The API against its own /openapi.json: schemathesis generates requests for every operation (valid
and invalid ones) and checks each answer's status, content type, headers and body against the
schema. Bounded (max_examples per operation, derandomized) so that it fits in `make test`.
"""

import contextlib

import pandas as pd
import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from api.app import create_app
from recsys import snapshot


def requests_only(app):
    """The app for schemathesis' requests. Its lifespan (snapshot watcher, exposure log) runs once, in
    the fixture's TestClient, which also stops it: an app that fails the lifespan scope before reading
    a message is served without one (the ASGI spec), so schemathesis does not start a second."""

    async def serve(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("the lifespan runs in the test's TestClient")
        await app(scope, receive, send)

    return serve


@contextlib.contextmanager
def served_schema(settings):
    """The app over settings' snapshot, running, and its schema as schemathesis loads it."""
    app = create_app(settings)
    with TestClient(app):
        yield schemathesis.openapi.from_asgi("/openapi.json", requests_only(app))


def check_operation(operation, mode, query=None) -> None:
    @given(operation.as_strategy(generation_mode=mode, query=query))
    @settings(max_examples=50, deadline=None, derandomize=True, database=None)
    def answers_as_documented(case):
        case.call_and_validate()

    answers_as_documented()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_matches_the_openapi_schema(served_copy, mode):
    with served_schema(served_copy) as schema:
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} == {"/post/recommendations/", "/health", "/ready"}
        for operation in operations:
            if mode is GenerationMode.POSITIVE or len(operation.query):  # no parameter, nothing invalid to send
                check_operation(operation, mode)


def test_a_known_users_answers_match_the_openapi_schema(served_copy):
    """Most generated ids are unknown (404): this run asks for a user of the snapshot (200s)."""
    user_id = int(pd.read_parquet(snapshot.current_dir(served_copy) / "users.parquet")["user_id"].iloc[0])
    with served_schema(served_copy) as schema:
        check_operation(schema["/post/recommendations/"]["GET"], GenerationMode.POSITIVE, query={"id": user_id})
