"""The original's design, for comparison: every request scores all posts with CatBoost.

The same features and models as the product (the snapshot's history and models), but no
precomputed lists: each request builds the user x all-posts feature frame and predicts.

    RECSYS_DATA_DIR=... uvicorn --app-dir bench onthefly_app:app --port 8102
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.snapshots import load_snapshot  # noqa: E402
from recsys import models, snapshot  # noqa: E402
from recsys.config import load_settings  # noqa: E402

current = load_snapshot(snapshot.current_dir(load_settings()))
users = pd.read_parquet(current.folder / "users.parquet").set_index("user_id")


async def score_all_posts(request: Request) -> Response:
    user_id = int(request.query_params["id"])
    user = pd.DataFrame([{"user_id": user_id, **users.loc[user_id].drop(["group", "shard"]).to_dict()}])
    when = pd.Timestamp(request.query_params.get("time", "2021-12-30T12:00"))
    group = current.group_of(user_id)
    scorer = current.fresh_scorers[group]  # its model and serving features, over every post
    every_post = np.arange(len(scorer.post_ids))[None, :]
    scores = models.predict(scorer.model, scorer.kind, scorer.serving.features(user, every_post, when))
    best = scorer.post_ids[np.argsort(-scores, kind="stable")[: int(request.query_params.get("limit", 5))]]
    return Response(current.render(group, current.post_index.get_indexer(best)), media_type="application/json")


app = Starlette(routes=[Route("/post/recommendations/", score_all_posts)])
