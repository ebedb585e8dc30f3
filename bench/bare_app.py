"""The ceiling of the stack: Starlette + uvicorn answering a constant JSON body of a real response's size.

    uvicorn --app-dir bench bare_app:app --port 8101
"""

import json

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = json.dumps({
    "exp_group": "control",
    "recommendations": [{"id": 1000 + i, "text": "x" * 900, "topic": "movie"} for i in range(5)],
}).encode()  # fmt: skip


async def constant(request):
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/post/recommendations/", constant)])
