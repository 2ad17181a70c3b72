"""A minimal HTTP/1.1 client on raw asyncio streams: keep-alive, Content-Length and chunked
bodies, and a cookie jar per virtual client. Fast enough to load two server workers from
the same two cores (httpx costs several times more CPU per request)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

HOST = "127.0.0.1"


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response we understand."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]


@dataclass
class CookieJar:
    """Name -> value for one host; Set-Cookie with ``Max-Age<=0`` or a past ``Expires``
    deletes. Shared by several virtual clients when they share a session."""

    cookies: dict[str, str] = field(default_factory=dict)

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def update(self, response: Response) -> None:
        for raw in response.header_values("set-cookie"):
            first, *attributes = raw.split(";")
            name, _, value = first.strip().partition("=")
            expired = False
            for attribute in attributes:
                key, _, arg = attribute.strip().partition("=")
                key = key.lower()
                if key == "max-age":
                    expired = arg.strip().lstrip("-").isdigit() and int(arg) <= 0
                elif key == "expires" and not expired:
                    with contextlib.suppress(TypeError, ValueError):
                        expired = parsedate_to_datetime(arg).timestamp() < time.time()
            if expired or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


class Connection:
    """One keep-alive connection to ``127.0.0.1:port``, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self, method: str, path: str, cookie: str = "", body: bytes = b""
    ) -> Response:
        """One request. Raises OSError (connect, reset), asyncio.IncompleteReadError (the
        server closed mid-response) or ProtocolError; the connection is closed on any."""
        try:
            return await self._request(method, path, cookie, body)
        except BaseException:
            await self.close()
            raise

    async def _request(self, method: str, path: str, cookie: str, body: bytes) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
            lines.append("Content-Type: application/x-www-form-urlencoded")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._quickack()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {status_line!r}")
        headers = []
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        fields = dict(headers)
        if fields.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._chunked()
        else:
            payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            await self.close()
        return Response(int(parts[1]), headers, payload)

    def _quickack(self) -> None:
        """Acknowledge at once: uvicorn's workers (``--workers 2``) get their socket from
        the supervisor without ``TCP_NODELAY`` (asyncio sets it only when the socket says
        ``IPPROTO_TCP``), so a response written in two parts waits for the ACK of the first,
        which Linux delays by 40 ms on a keep-alive connection."""
        assert self.writer is not None
        sock = self.writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        chunks: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
