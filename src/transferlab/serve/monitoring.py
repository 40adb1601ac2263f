"""Prometheus metrics of a server (prometheus-client), in a registry of its own per app, exposed at
``GET /metrics`` in the Prometheus text format:

=====================================  ======================================================================
``transferlab_requests_total``         requests answered, by ``route`` (the route's path, not the URL), ``method``, ``status``
``transferlab_requests_in_flight``     requests being answered now
``transferlab_prediction_seconds``     ``POST /predict`` time (reading, decoding, batching, inference), histogram
``transferlab_images_predicted_total`` images classified
=====================================  ======================================================================
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"
PREDICTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Monitor:
    """One app's metrics (a registry of its own: two apps in one process do not mix their counts)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("transferlab_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.in_flight = Gauge("transferlab_requests_in_flight", "HTTP requests being answered", registry=self.registry)
        self.prediction_seconds = Histogram("transferlab_prediction_seconds",
                                            "POST /predict time: reading, decoding, batching and inference",
                                            buckets=PREDICTION_BUCKETS, registry=self.registry)
        self.images = Counter("transferlab_images_predicted", "images classified", registry=self.registry)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


def flat_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The routes with those of included routers flattened (recent FastAPI keeps an included router as one entry)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: include_router copies the routes in
        return list(routes)
    return [ctx.route for ctx in iter_route_contexts(routes)]


class MetricsMiddleware:
    """Count every HTTP request by route and status and track the requests in flight (outside the other
    middlewares, so refusals such as 413 and 429 are counted too)."""

    def __init__(self, app, monitor: Monitor, routes: list[BaseRoute]):
        self.app = app
        self.monitor = monitor
        self.routes = routes                       # the app's route list, read at the first request
        self._flat: list[BaseRoute] | None = None

    def route_of(self, probe: dict) -> str:
        """The path template of the route ``probe`` (the request's scope as it came in) matches: ``/predict``,
        ``/static``, ``unmatched``, so a label never holds a raw URL (also for requests refused before routing)."""
        if self._flat is None:
            self._flat = flat_routes(self.routes)
        for route in self._flat:
            if route.matches(probe)[0] != Match.NONE:
                return getattr(route, "path", None) or "other"
        return "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        probe = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", ""),
                 "method": scope.get("method")}

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.monitor.in_flight.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.monitor.in_flight.dec()
            method = scope.get("method", "")
            self.monitor.requests.labels(self.route_of(probe), method if method in METHODS else "other",
                                         str(status)).inc()
