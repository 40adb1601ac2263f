"""Serving on a network: the API key (401 without it, either header form, /health and the page open),
the per-client rate limit on /predict (429 with Retry-After; the token bucket itself), CORS origins,
Prometheus /metrics, and the options' checks (create_app and the CLI)."""
from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from test_export_fixtures import digits_run, exported_run, write_images  # noqa: F401

from transferlab.errors import ConfigError
from transferlab.serve import create_app
from transferlab.serve.access import RateLimiter, check_cors_origins

KEY = "s3cret-Key_42"


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> bytes:
    return write_images(tmp_path_factory.mktemp("net-img"), n=1)[0].read_bytes()


def _post(client, png, **headers):
    return client.post("/predict", files={"files": ("a.png", png, "image/png")}, headers=headers)


# ------------------------------------------------------------------------------------------ the API key
@pytest.fixture(scope="module")
def keyed(exported_run):
    with TestClient(create_app(exported_run, api_key=KEY)) as c:
        yield c


def test_api_key_required_on_every_route_but_health_and_the_page(keyed, png):
    for method, url in (("GET", "/model"), ("GET", "/metrics"), ("POST", "/predict")):
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": f"Bearer {KEY}x"},
                        {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY.lower()}):
            r = keyed.request(method, url, headers=headers)
            assert r.status_code == 401, (url, headers, r.text)
            assert r.json()["detail"].startswith("API key"), r.text
            assert r.headers["www-authenticate"] == "Bearer"
    assert "X-API-Key" in keyed.get("/model").json()["detail"]              # says how to send it
    assert KEY not in keyed.get("/model", headers={"X-API-Key": "nope"}).text  # never echoes the key
    for url in ("/health", "/", "/static/app.js", "/static/style.css", "/favicon.ico", "/docs", "/openapi.json"):
        assert keyed.get(url).status_code == 200, url


def test_either_header_form_is_accepted(keyed, png):
    for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"},
                    {"X-API-Key": "wrong", "Authorization": f"Bearer {KEY}"}):
        assert keyed.get("/model", headers=headers).status_code == 200, headers
        r = _post(keyed, png, **headers)
        assert r.status_code == 200 and r.json()["predictions"][0]["label"], r.text
    assert keyed.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200


def test_docs_declare_the_key_schemes(keyed):
    """/docs' "Authorize" button takes the key: the OpenAPI spec declares both ways to send it."""
    spec = keyed.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert any(s.get("name") == "X-API-Key" for s in schemes.values())
    assert spec["paths"]["/predict"]["post"]["security"]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_page_asks_for_the_key_and_sends_it():
    """The page stays public; its script asks for the key on 401, keeps it in sessionStorage and sends
    it as X-API-Key (a browser test runs it where Chromium is installed: test_serve_browser.py)."""
    from transferlab.serve.routers.pages import STATIC_DIR

    js = (STATIC_DIR / "app.js").read_text()
    assert "sessionStorage" in js and '"X-API-Key"' in js and "resp.status === 401" in js
    assert 'id="key-form"' in (STATIC_DIR / "index.html").read_text()


def test_no_key_no_check(exported_run, png):
    with TestClient(create_app(exported_run)) as c:
        assert c.get("/model").status_code == 200 and _post(c, png).status_code == 200


# ------------------------------------------------------------------------------------------ rate limit
def test_rate_limit_429_with_retry_after_per_client(exported_run, png):
    app = create_app(exported_run, rate_limit=3)
    with TestClient(app, client=("10.0.0.1", 5000)) as a:
        assert [_post(a, png).status_code for _ in range(3)] == [200, 200, 200]
        r = _post(a, png)
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 20            # one request back in 60/3 = 20 s
        assert r.json()["detail"].startswith("rate limit exceeded: at most 3 requests per minute")
        assert a.get("/model").status_code == 200 and a.get("/health").status_code == 200  # /predict only
        with TestClient(app, client=("10.0.0.2", 5000)) as b:      # another client has its own bucket
            assert _post(b, png).status_code == 200


def test_rate_limit_and_key_together(exported_run, png):
    """Requests without the key use the client's budget too (a key guesser is slowed down)."""
    with TestClient(create_app(exported_run, api_key=KEY, rate_limit=2)) as c:
        assert [_post(c, png).status_code for _ in range(2)] == [401, 401]
        assert _post(c, png, **{"X-API-Key": KEY}).status_code == 429


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)            # 60 at once, then one per second
    assert all(limiter.acquire("a") == 0 for _ in range(60))
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0                  # clients are independent
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0 and limiter.acquire("a") > 0
    clock.now += 3600                                  # a long pause refills to the capacity, not beyond
    assert sum(limiter.acquire("a") == 0 for _ in range(100)) == 60


def test_token_bucket_forgets_refilled_clients():
    clock = FakeClock()
    limiter = RateLimiter(10, max_clients=100, clock=clock)
    for i in range(100):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}")
    clock.now += 60                                    # all refilled: the same as never seen
    limiter.acquire("new")
    assert len(limiter) <= 2


def test_token_bucket_is_thread_safe():
    limiter = RateLimiter(1000, clock=FakeClock())     # the clock stands still: exactly 1000 tokens
    allowed = []

    def take():
        allowed.append(sum(limiter.acquire("c") == 0 for _ in range(500)))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 1000


# ------------------------------------------------------------------------------------------ CORS
def test_cors_headers_only_for_listed_origins(exported_run, png):
    with TestClient(create_app(exported_run, cors_origins="https://a.example,http://b.example:8080",
                               api_key=KEY)) as c:
        r = c.get("/model", headers={"Origin": "https://a.example", "X-API-Key": KEY})
        assert r.headers["access-control-allow-origin"] == "https://a.example"
        r = c.get("/model", headers={"Origin": "https://evil.example", "X-API-Key": KEY})
        assert "access-control-allow-origin" not in r.headers
        pre = c.options("/predict", headers={"Origin": "http://b.example:8080", "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://b.example:8080"
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
        r = c.get("/model", headers={"Origin": "https://a.example"})    # a refusal the page can read
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://a.example"
    with TestClient(create_app(exported_run)) as c:                    # default: no CORS headers at all
        r = c.get("/model", headers={"Origin": "https://a.example"})
        assert r.status_code == 200 and not [h for h in r.headers if h.startswith("access-control")]


# ------------------------------------------------------------------------------------------ metrics
def _sample(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_count_requests_latency_and_images(exported_run, png):
    with TestClient(create_app(exported_run, max_upload_mb=1)) as c:
        two = [("files", ("a.png", png, "image/png")), ("files", ("b.png", png, "image/png"))]
        assert c.post("/predict", files=two).status_code == 200
        assert _post(c, png).status_code == 200
        assert c.post("/predict", files={"files": ("x.txt", b"text", "text/plain")}).status_code == 415
        assert c.get("/nowhere").status_code == 404
        assert c.get("/static/app.js").status_code == 200
        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
    assert _sample(text, "transferlab_requests_total", route="/predict", method="POST", status="200") == 2
    assert _sample(text, "transferlab_requests_total", route="/predict", method="POST", status="415") == 1
    assert _sample(text, "transferlab_requests_total", route="unmatched", status="404") == 1
    assert _sample(text, "transferlab_requests_total", route="/static", status="200") == 1
    assert _sample(text, "transferlab_images_predicted_total") == 3
    assert _sample(text, "transferlab_prediction_seconds_count") == 2
    assert _sample(text, "transferlab_prediction_seconds_bucket", le="+Inf") == 2
    assert _sample(text, "transferlab_prediction_seconds_sum") > 0
    assert _sample(text, "transferlab_requests_in_flight") == 1         # the /metrics request itself


def test_metrics_count_refusals_and_apps_keep_their_own(exported_run, png):
    with TestClient(create_app(exported_run, rate_limit=1)) as c:
        _post(c, png)
        assert _post(c, png).status_code == 429
        text = c.get("/metrics").text
    assert _sample(text, "transferlab_requests_total", route="/predict", status="429") == 1
    assert _sample(text, "transferlab_images_predicted_total") == 1      # not the other tests' apps


# ------------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize("kwargs, message", [
    ({"rate_limit": 0}, "--rate-limit must be"),
    ({"rate_limit": -5}, "--rate-limit must be"),
    ({"rate_limit": 2.5}, "--rate-limit must be"),
    ({"api_key": ""}, "the API key is empty"),
    ({"api_key": "has space"}, "printable ASCII"),
    ({"api_key": "clé"}, "printable ASCII"),
    ({"cors_origins": "https://a.example/"}, "is not an origin"),
    ({"cors_origins": ["a.example"]}, "is not an origin"),
])
def test_bad_settings_are_config_errors(exported_run, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_app(exported_run, **kwargs)


def test_cors_origins_parsing():
    assert check_cors_origins(None) == [] and check_cors_origins("") == []
    assert check_cors_origins(" https://a.example , http://localhost:3000,") == ["https://a.example",
                                                                                  "http://localhost:3000"]
    assert check_cors_origins(["*"]) == ["*"]


def _cli(argv, monkeypatch, env_key=None):
    """``transferlab serve`` through the CLI with uvicorn.run replaced: (exit code, the app it would serve)."""
    import uvicorn

    from transferlab.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app))
    if env_key is None:
        monkeypatch.delenv("TRANSFERLAB_API_KEY", raising=False)
    else:
        monkeypatch.setenv("TRANSFERLAB_API_KEY", env_key)
    return main(["serve", *argv]), served.get("app")


def test_cli_options_reach_the_app(exported_run, monkeypatch, logged, png):
    code, app = _cli([str(exported_run), "--api-key", KEY, "--rate-limit", "5", "--cors-origins",
                      "https://a.example"], monkeypatch)
    assert code == 0
    serving = app.state.serving
    assert (serving.api_key, serving.rate_limit, serving.cors_origins) == (KEY, 5, ["https://a.example"])
    line = next(m for m in logged if m.startswith("serving "))
    assert "an API key is required" in line and "5 predictions per minute" in line and KEY not in line
    assert not any(KEY in m for m in logged)
    with TestClient(app) as c:
        assert _post(c, png).status_code == 401 and _post(c, png, **{"X-API-Key": KEY}).status_code == 200


def test_cli_reads_the_key_from_the_environment(exported_run, monkeypatch):
    code, app = _cli([str(exported_run)], monkeypatch, env_key=KEY)
    assert code == 0 and app.state.serving.api_key == KEY
    code, app = _cli([str(exported_run), "--api-key", "other"], monkeypatch, env_key=KEY)   # the option wins
    assert app.state.serving.api_key == "other"


@pytest.mark.parametrize("argv, env_key, message", [
    (["--rate-limit", "0"], None, "--rate-limit must be"),
    (["--rate-limit", "-1"], None, "--rate-limit must be"),
    (["--api-key", ""], None, "--api-key is empty"),
    ([], "", "TRANSFERLAB_API_KEY is set but empty"),
    (["--cors-origins", "example.org"], None, "is not an origin"),
])
def test_cli_bad_values_are_one_error_line(exported_run, monkeypatch, capsys, argv, env_key, message):
    code, app = _cli([str(exported_run), *argv], monkeypatch, env_key=env_key)
    err = capsys.readouterr().err
    assert code != 0 and app is None
    assert message in err and "Traceback" not in err, err
