"""uvicorn's httptools protocol, with bounds on a request's head: its size, its header count,
and the time it takes to arrive.

httptools keeps a header's bytes until the header ends, and uvicorn sets no limit, so a client
can make the server hold a 256 MiB header in memory, or trickle one forever. This protocol
counts the bytes of a request's head as they arrive and answers 431 (Request Header Fields Too
Large) as soon as they pass `max_head_bytes` or the headers pass `max_headers`, and 408 when a
head is not complete within `head_timeout` seconds; each closes the connection, so nothing more
is read. Everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BoundedHttpToolsProtocol", "configure"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_LINGER = 2.0  # seconds a refused connection is drained before it is closed


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses heads that are too large, too many or too slow."""

    max_head_bytes = 64 * 1024
    max_headers = 100
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._discarding = False
        self._began = False
        self._tail = b""  # the last bytes seen, so a head's end split over two chunks is found

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, with the head's bytes counted first and too many headers told apart
        # from a malformed request (httptools reports both as a parser error).
        self._unset_keepalive_if_required()
        if self._discarding:
            return  # refused: what still arrives is dropped, not buffered
        if self._reading_head:
            # Count the head only: a chunk may hold its end and the body that follows.
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = window[-3:]
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, f"request headers larger than {self.max_head_bytes} bytes")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._header_count > self.max_headers:
                self._refuse(431, f"more than {self.max_headers} request headers")
                return
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._began = True
        self._header_count = 0
        self._start_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise ValueError("too many headers")  # stops the parser; told apart above
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = self._began = False
        self._head_bytes = 0  # the next request's head is counted afresh
        self._tail = b""
        self._stop_head_timer()
        super().on_headers_complete()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._reading_head and self._began:
            self._refuse(408, f"request headers not received within {self.head_timeout:g} s")
        elif self._reading_head and self.cycle is None:
            self.transport.close()  # a connection that never sent a byte: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error and close the connection; read nothing more."""
        self._stop_head_timer()
        self._reading_head = False
        if self.transport.is_closing():
            return
        body = b'{"detail": ["' + message.encode() + b'"]}'
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        # A lingering close, as nginx does: closing while the client still sends would reset
        # the connection and lose the answer, so drop what arrives for a moment, then close.
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER, self.transport.close)
        self.logger.warning("refused a request's head: %s", message)


def configure(max_head_bytes: int, max_headers: int, head_timeout: float) -> None:
    """Set the limits for this process's connections (each worker sets its own at start)."""
    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.max_headers = max_headers
    BoundedHttpToolsProtocol.head_timeout = head_timeout
