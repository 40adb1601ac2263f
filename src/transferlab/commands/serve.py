"""``transferlab serve RUN``: a web page at ``/`` and a REST API (``POST /predict``, ``GET /health``,
``GET /model``, ``GET /metrics``, docs at ``/docs``), served by uvicorn, optionally behind an API key,
a per-client rate limit and CORS origins. See :mod:`transferlab.serve`.
"""
from __future__ import annotations

import argparse
import os
import socket

from ..choices import BACKENDS
from ..errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder (with best.safetensors or export/model.onnx)")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (use 0.0.0.0 to listen on all interfaces)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--max-upload-mb", type=float, default=10, help="request size limit in MB (default 10)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: ONNX Runtime when exported, else PyTorch (default auto)")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="images per batched model call (default 8: larger batches are no faster on a CPU "
                             "and need more memory)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long a request waits for others to share its batch (default 5 ms)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the usable cores)")
    parser.add_argument("--no-unknown", action="store_true",
                        help="always answer a class (default: 'unknown' below the threshold evaluate chose on the "
                             "validation split, when there is one)")
    net = parser.add_argument_group("on a network")
    net.add_argument("--api-key", default=None, metavar="KEY",
                     help="require this key (header 'X-API-Key: KEY' or 'Authorization: Bearer KEY') on every route "
                          "but /health and the page; default: $TRANSFERLAB_API_KEY (which keeps it out of ps), else none")
    net.add_argument("--rate-limit", type=int, default=None, metavar="N",
                     help="at most N POST /predict per minute per client IP, then 429 with Retry-After (default: no limit)")
    net.add_argument("--cors-origins", default=None, metavar="A,B",
                     help="origins whose pages may call the API, e.g. https://example.org (default: none, no CORS headers)")


def check_address(host: str, port: int) -> None:
    """A one-line ConfigError for a port out of range or already taken (before any model is loaded)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror:
        raise ConfigError(f"--host {host!r} is not an address of this machine") from None
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another --port)") from None


def api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else $TRANSFERLAB_API_KEY (set but empty is an error, not an open server), else None."""
    if args.api_key is not None:
        if not args.api_key:
            raise ConfigError("--api-key is empty: give a key, or leave the option out to serve without one")
        return args.api_key
    key = os.environ.get("TRANSFERLAB_API_KEY")
    if key is not None and not key:
        raise ConfigError("TRANSFERLAB_API_KEY is set but empty: give a key, or unset it to serve without one")
    return key


def run(args: argparse.Namespace) -> int:
    if args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    key = api_key(args)
    from ..serve.access import check_api_key, check_cors_origins, check_rate_limit

    # checked before any model is loaded
    key, rate_limit, origins = check_api_key(key), check_rate_limit(args.rate_limit), check_cors_origins(args.cors_origins)
    check_address(args.host, args.port)
    from ..serve import serve  # here: FastAPI + ONNX Runtime add 0.7 s to every CLI start (measured)

    serve(args.run, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, backend=args.backend,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, threads=args.threads,
          api_key=key, rate_limit=rate_limit, cors_origins=origins, reject=not args.no_unknown)
    return 0
