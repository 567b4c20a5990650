"""Shared helpers of the centrifuge-python / cent conformance tests.

Environment (set by conformance/run.sh; defaults fit a Herald started by hand with
conformance/herald.toml from the repository root):
  CONFORMANCE_HTTP     base URL of Herald            (http://127.0.0.1:18000)
  CONFORMANCE_API_KEY  server API key                (conformance-api-key)
  CONFORMANCE_SECRET   HMAC secret of client tokens  (conformance-secret-key)
  CONFORMANCE_BIN      herald binary                 (<repo>/target/debug/herald)
  CONFORMANCE_CONFIG   herald config file            (<repo>/conformance/herald.toml)
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from centrifuge import ClientEventHandler, SubscriptionEventHandler

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTP = os.environ.get("CONFORMANCE_HTTP", "http://127.0.0.1:18000").rstrip("/")
WS_URL = HTTP.replace("http", "ws", 1) + "/connection/websocket"
API_URL = HTTP + "/api"
API_KEY = os.environ.get("CONFORMANCE_API_KEY", "conformance-api-key")
SECRET = os.environ.get("CONFORMANCE_SECRET", "conformance-secret-key")
HERALD_BIN = os.environ.get("CONFORMANCE_BIN", str(REPO_ROOT / "target" / "debug" / "herald"))
HERALD_CONFIG = os.environ.get("CONFORMANCE_CONFIG", str(REPO_ROOT / "conformance" / "herald.toml"))


def uid() -> str:
    return uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------------------------
# Tokens


async def herald_token(
    user: str,
    channels: Optional[List[str]] = None,
    ttl: Optional[str] = None,
    channel: Optional[str] = None,
    info: Any = None,
) -> str:
    """Mint a token with `herald token` (subscription token when channel is given)."""
    args = ["token", "--config", HERALD_CONFIG, "--user", user]
    if info is not None:
        args += ["--info", json.dumps(info)]
    if channels:
        args += ["--channels", ",".join(channels)]
    if ttl:
        args += ["--ttl", ttl]
    if channel:
        args += ["--channel", channel]
    proc = await asyncio.create_subprocess_exec(
        HERALD_BIN, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    token = out.decode().strip()
    if proc.returncode != 0 or token.count(".") != 2:
        raise AssertionError(
            f"herald {' '.join(args)} failed (rc {proc.returncode}): stdout {out!r} stderr {err!r}"
        )
    return token


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign_jwt(claims: Dict[str, Any], secret: str = SECRET) -> str:
    """Mint an HS256 JWT here (for tokens Herald must refuse: wrong secret, expired)."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(sig)}"


def now() -> int:
    return int(time.time())


# ---------------------------------------------------------------------------------------
# Codecs


class Codec:
    """JSON mode passes Python values; protobuf mode passes bytes (JSON text here)."""

    def __init__(self, protobuf: bool):
        self.protobuf = protobuf
        self.name = "protobuf" if protobuf else "json"

    def encode(self, value: Any) -> Any:
        if self.protobuf:
            return json.dumps(value).encode()
        return value

    def decode(self, data: Any) -> Any:
        if self.protobuf:
            assert isinstance(data, (bytes, bytearray)), f"protobuf client expected bytes, got {data!r}"
            return json.loads(bytes(data))
        return data


# ---------------------------------------------------------------------------------------
# Event recording


class _Recorder:
    def __init__(self) -> None:
        self.queues: Dict[str, asyncio.Queue] = defaultdict(asyncio.Queue)
        self.events: List[tuple] = []

    def _put(self, name: str, ctx: Any) -> None:
        self.events.append((name, ctx, time.monotonic()))
        self.queues[name].put_nowait(ctx)

    def of(self, name: str) -> List[Any]:
        return [ctx for (n, ctx, _) in self.events if n == name]

    async def next(self, name: str, timeout: float = 5.0) -> Any:
        try:
            return await asyncio.wait_for(self.queues[name].get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"timeout ({timeout}s) waiting for {name}; events so far: {self.summary()}"
            ) from None

    async def take(self, name: str, n: int, timeout: float = 5.0) -> List[Any]:
        return [await self.next(name, timeout) for _ in range(n)]

    async def wait(self, name: str, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timeout ({timeout}s) waiting for matching {name}; events: {self.summary()}")
            ctx = await self.next(name, left)
            if predicate(ctx):
                return ctx

    def summary(self) -> str:
        return "; ".join(f"{n}: {ctx!r}"[:300] for (n, ctx, _) in self.events[-20:])


class ClientRecorder(ClientEventHandler, _Recorder):
    def __init__(self) -> None:
        _Recorder.__init__(self)

    async def on_connecting(self, ctx):
        self._put("connecting", ctx)

    async def on_connected(self, ctx):
        self._put("connected", ctx)

    async def on_disconnected(self, ctx):
        self._put("disconnected", ctx)

    async def on_error(self, ctx):
        self._put("error", ctx)

    async def on_subscribed(self, ctx):
        self._put("subscribed", ctx)

    async def on_subscribing(self, ctx):
        self._put("subscribing", ctx)

    async def on_unsubscribed(self, ctx):
        self._put("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self._put("publication", ctx)

    async def on_join(self, ctx):
        self._put("join", ctx)

    async def on_leave(self, ctx):
        self._put("leave", ctx)


class SubRecorder(SubscriptionEventHandler, _Recorder):
    def __init__(self) -> None:
        _Recorder.__init__(self)

    async def on_subscribing(self, ctx):
        self._put("subscribing", ctx)

    async def on_subscribed(self, ctx):
        self._put("subscribed", ctx)

    async def on_unsubscribed(self, ctx):
        self._put("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self._put("publication", ctx)

    async def on_join(self, ctx):
        self._put("join", ctx)

    async def on_leave(self, ctx):
        self._put("leave", ctx)

    async def on_error(self, ctx):
        self._put("error", ctx)


async def first_of(rec: _Recorder, names: List[str], timeout: float = 5.0, start: int = 0) -> tuple:
    """The first event (name, ctx) among `names` recorded at index >= start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, ctx, _ in rec.events[start:]:
            if name in names:
                return name, ctx
        await asyncio.sleep(0.01)
    raise AssertionError(f"timeout ({timeout}s) waiting for one of {names}; events: {rec.summary()}")


async def connect(client, timeout: float = 5.0):
    """Connect and return the ConnectedContext (fails on disconnected)."""
    start = len(client.rec.events)
    await client.connect()
    name, ctx = await first_of(client.rec, ["connected", "disconnected"], timeout, start)
    assert name == "connected", f"client disconnected while connecting: {ctx!r}"
    return ctx


async def subscribe(client, channel: str, timeout: float = 5.0, **kwargs):
    """New subscription with a SubRecorder (sub.rec); returns (sub, SubscribedContext)."""
    rec = SubRecorder()
    sub = client.new_subscription(channel, events=rec, **kwargs)
    sub.rec = rec
    await sub.subscribe()
    name, ctx = await first_of(rec, ["subscribed", "unsubscribed"], timeout)
    assert name == "subscribed", f"subscription to {channel} ended: {ctx!r}"
    return sub, ctx


# ---------------------------------------------------------------------------------------
# A private Herald (for settings the shared server does not have)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateHerald:
    """`herald serve` with the conformance config plus HERALD_* overrides, on its own port and
    store, its log (stderr) piped to a file. Use as an async context manager."""

    def __init__(self, tmp_path: Path, **overrides: str) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "herald.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        self.env.update(
            {
                "HERALD_SERVER__LISTEN": f"127.0.0.1:{self.port}",
                "HERALD_STORE__DATA_DIR": str(tmp_path / "data"),
                "RUST_LOG": "info",
            }
        )
        self.env.update(overrides)
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/connection/websocket"
        self.proc = None

    async def __aenter__(self) -> "PrivateHerald":
        import urllib.request

        self._log = open(self.log_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            HERALD_BIN, "--config", HERALD_CONFIG, "serve", env=self.env, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.returncode is not None:
                raise AssertionError(f"herald exited during startup: {self.log()}")
            try:
                with await asyncio.to_thread(urllib.request.urlopen, self.http + "/readyz", None, 1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"herald not ready in 20 s: {self.log()}")
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
