"""``GET /metrics``: the server's Prometheus metrics (:mod:`..monitoring`) in the text format."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..access import ApiKeyDep
from ..state import ServingDep

router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics: requests by route and status, prediction latency, images",
            response_class=Response, dependencies=[ApiKeyDep])
async def metrics(serving: ServingDep) -> Response:
    return Response(serving.monitor.exposition(), media_type=serving.monitor.content_type)
