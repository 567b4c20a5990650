"""Broadcast server on Python `websockets` (asyncio API), single process, single thread.

WS   /ws?channel=C          subscribe to C; each text frame is one published body
POST /publish?channel=C     body is sent verbatim to every subscriber of C
GET  /health                200

`websockets` serves only WebSocket handshakes (GET without a body) and plain GET
responses through `process_request`, so the one POST route is parsed by a small
subclass of its connection (its documented `create_connection` hook) before the
handshake parser sees the bytes. Broadcasting uses `websockets.broadcast`, which
encodes the frame once and writes it to every connection without awaiting.
"""

import asyncio
import sys
from collections import defaultdict
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

channels: dict[str, set] = defaultdict(set)


def channel_of(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("channel", [""])[0]


class Connection(ServerConnection):
    """A WebSocket connection that also answers `POST /publish` (keep-alive)."""

    http_buf: bytes | None = None  # set once the first bytes are a POST

    def data_received(self, data: bytes) -> None:
        if self.http_buf is None and self.request is None and data.startswith(b"POST "):
            self.http_buf = b""
        if self.http_buf is None:
            return super().data_received(data)
        self.http_buf += data
        while (end := self.http_buf.find(b"\r\n\r\n")) >= 0:
            head = self.http_buf[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:])}
            if "transfer-encoding" in headers:  # publishers must send Content-Length
                self.transport.write(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()
                return
            size = int(headers.get("content-length", "0"))
            if len(self.http_buf) < end + 4 + size:
                return
            body, self.http_buf = self.http_buf[end + 4 : end + 4 + size], self.http_buf[end + 4 + size :]
            method, path, _ = head[0].split(" ", 2)
            if method == "POST" and urlsplit(path).path == "/publish":
                subs = channels.get(channel_of(path), ())
                broadcast(subs, body.decode("utf-8"))
                reply = b'{"delivered":%d}' % len(subs)
                status = b"200 OK"
            else:
                reply, status = b"not found", b"404 Not Found"
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(reply) + reply
            )


def process_request(connection, request):
    if request.path == "/health":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if urlsplit(request.path).path != "/ws":
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def handler(websocket):
    subs = channels[channel_of(websocket.request.path)]
    subs.add(websocket)
    try:
        async for _ in websocket:  # subscribers send nothing we act on
            pass
    finally:
        subs.discard(websocket)


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        create_connection=Connection,
        compression=None,
        backlog=4096,
    ) as server:
        print(f"py-websockets listening on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8080))
