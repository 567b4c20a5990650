"""Shared helpers of the Svix SDK (webhook) conformance tests.

Environment (set by conformance/run.sh; defaults fit a Herald started by hand with
conformance/herald.toml from the repository root):
  CONFORMANCE_HTTP               base URL of Herald                      (http://127.0.0.1:18000)
  CONFORMANCE_HTTP_SVIX_HEADERS  a second Herald with webhooks.header_style = "svix"
                                 (tests that need it are skipped when it is not set)
  CONFORMANCE_MANAGEMENT_SECRET  management.jwt_secret    (conformance-management-jwt-secret)
  CONFORMANCE_BIN / CONFORMANCE_CONFIG  as in harness.py (for `herald token --svix`)
"""

import functools
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, TypeVar

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix import Svix, SvixAsync, SvixOptions
from svix import Webhook as SvixWebhook

from harness import HERALD_BIN, HERALD_CONFIG, HTTP

# management.jwt_secret of conformance/herald.toml (to mint expired tokens here).
MANAGEMENT_SECRET = os.environ.get("CONFORMANCE_MANAGEMENT_SECRET", "conformance-management-jwt-secret")
SVIX_HEADERS_HTTP = os.environ.get("CONFORMANCE_HTTP_SVIX_HEADERS", "").rstrip("/") or None

T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def svix_token() -> str:
    """The management API bearer token, minted once with `herald token --svix`."""
    args = [HERALD_BIN, "token", "--svix", "--config", HERALD_CONFIG]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=10)
    token = proc.stdout.strip()
    if proc.returncode != 0 or token.count(".") != 2:
        raise AssertionError(f"{' '.join(args)} failed (rc {proc.returncode}): {proc.stdout!r} {proc.stderr!r}")
    return token


def svix_options(server_url: str = HTTP) -> SvixOptions:
    return SvixOptions(server_url=server_url, timeout=10.0)


def svix_client(server_url: str = HTTP, token: Optional[str] = None) -> Svix:
    """The official (sync) Svix SDK pointed at Herald."""
    return Svix(token or svix_token(), svix_options(server_url))


def svix_async_client(server_url: str = HTTP, token: Optional[str] = None) -> SvixAsync:
    return SvixAsync(token or svix_token(), svix_options(server_url))


def until(fn: Callable[[], Optional[T]], timeout: float = 10.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout}s) waiting for {what}; last value {value!r}")
        time.sleep(interval)


def all_pages(page: Callable[[Optional[str]], Any], max_pages: int = 100) -> List[Any]:
    """Every item of a Svix list: `page(iterator)` returns a ListResponse*."""
    items: List[Any] = []
    iterator = None
    for i in range(max_pages):
        out = page(iterator)
        items.extend(out.data)
        if out.done:
            return items
        assert out.iterator, f"page {i} is not done but has no iterator: {out!r}"
        iterator = out.iterator
    raise AssertionError(f"more than {max_pages} pages")


# ---------------------------------------------------------------------------------------
# The webhook receiver


class Received:
    def __init__(self, path: str, method: str, headers: Dict[str, str], body: bytes, status: int) -> None:
        self.path = path
        self.method = method
        self.headers = headers  # lower-case names
        self.body = body
        self.status = status
        self.at = time.monotonic()

    def __repr__(self) -> str:
        return f"Received({self.method} {self.path} -> {self.status}, {self.headers!r}, {self.body[:200]!r})"


class Receiver:
    """A local HTTP server (its own thread) recording every request, answering scripted statuses.

    `script(path, [500, 500])`: the next two requests to `path` get 500, later ones 200.
    Usable from sync and async tests alike (waiting polls; it never blocks the server).
    """

    def __init__(self) -> None:
        self.requests: List[Received] = []
        self.scripts: Dict[str, List[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.lock:
                    queue = receiver.scripts.get(self.path)
                    status = queue.pop(0) if queue else 200
                    receiver.requests.append(
                        Received(self.path, "POST", {k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                reply = b"ok" if status == 200 else f"scripted {status}".encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, statuses: List[int]) -> None:
        with self.lock:
            self.scripts[path] = list(statuses)

    def on(self, path: str) -> List[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait(self, path: str, n: int = 1, timeout: float = 10.0) -> List[Received]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.on(path)
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timeout ({timeout}s) waiting for {n} webhook(s) on {path}; got {got!r}")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_both(secret: str, request: Received) -> Any:
    """Verify with `standardwebhooks` and with the svix SDK's `Webhook`; returns the parsed body."""
    parsed = StandardWebhook(secret).verify(request.body, request.headers)
    SvixWebhook(secret).verify(request.body, request.headers)
    return parsed


def assert_rejected_by_both(secret: str, request: Received) -> None:
    for name, make in (("standardwebhooks", StandardWebhook), ("svix", SvixWebhook)):
        try:
            make(secret).verify(request.body, request.headers)
        except Exception:  # noqa: BLE001 - any verification error is what we want
            continue
        raise AssertionError(f"{name} verified a webhook with a secret that should not match")
