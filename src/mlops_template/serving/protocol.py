"""Bounds on a request's head (its size, its header count, the time it takes to arrive) in
front of uvicorn's own HTTP protocol.

httptools keeps a header's bytes until the header ends, and uvicorn sets no limit, so a client
could make the server hold a 256 MiB header in memory, or trickle one forever. `HeadLimits` is
the asyncio protocol uvicorn runs for each connection (its `http` setting takes one): it watches
the bytes on their way to uvicorn's own httptools protocol, which it wraps, and answers 431
(Request Header Fields Too Large) as soon as a head passes `max_head_bytes` or its headers pass
`max_headers`, or 408 when a head is not complete within `head_timeout` seconds. Each refusal
closes the connection, so nothing more is read. It keeps its own httptools parser to find where
each request of a keep-alive connection begins; everything else is uvicorn's, untouched.

uvicorn learns of a connection when its first bytes arrive, not when it is accepted. At
shutdown uvicorn closes every connection with no request under way; one accepted a moment
before, whose request was sent but not yet read, would be reset. Such a request is read and
answered instead, and a connection that never sends a byte is closed with nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httptools
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from .service import error_body

__all__ = ["HeadLimits", "configure", "settled"]

log = logging.getLogger(__name__.rsplit(".", 1)[0])
# The protocol uvicorn runs for `--http httptools`, resolved as uvicorn resolves that setting.
_UVICORN_PROTOCOL: Any = import_from_string(HTTP_PROTOCOLS["httptools"])
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_LINGER = 2.0  # seconds a refused connection is drained before it is closed


class _TooManyHeadersError(Exception):
    pass


class _Arrivals:
    """This process's connections as they arrive, for the drain at shutdown."""

    last = 0.0  # the event loop's time when the latest one was accepted
    silent = 0  # accepted, and no byte received yet


def settled(quiet: float) -> bool:
    """Whether no connection has arrived for `quiet` seconds and each one has begun its
    request: until then, a shutdown would reset a request already sent."""
    now = asyncio.get_running_loop().time()
    return _Arrivals.silent == 0 and now - _Arrivals.last >= quiet


class HeadLimits(asyncio.Protocol):
    """uvicorn's httptools protocol, behind limits on each request's head."""

    max_head_bytes = 64 * 1024
    max_headers = 100
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.inner = _UVICORN_PROTOCOL(*args, **kwargs)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.watching = True  # until the parser meets something it cannot follow
        self.reading_head = True
        self.began = False
        self.head_bytes = 0
        self.headers = 0
        self.target = b""  # the start of the request's target: the error body differs under /v2
        self.tail = b""  # the last bytes seen, so a head's end split over two chunks is found
        self.timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.made = False  # whether uvicorn's protocol has been handed the connection

    # asyncio's protocol interface, passed on to uvicorn's protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        _Arrivals.last = self.loop.time()
        _Arrivals.silent += 1
        self._start_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        if self.made:
            self.inner.connection_lost(exc)
        else:
            _Arrivals.silent -= 1

    def eof_received(self) -> bool | None:
        if not self.made:
            return None  # closed before a byte was sent: nothing to answer
        keep_open: bool | None = self.inner.eof_received()
        return keep_open

    def pause_writing(self) -> None:
        if self.made:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.made:
            self.inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # what still arrives is dropped, not buffered
        if not self.made and self.transport is not None:
            self.made = True
            _Arrivals.silent -= 1
            self.inner.connection_made(self.transport)
        if self.watching:
            if self.reading_head:
                # Count the head only: a chunk may hold its end and the body that follows.
                window = self.tail + data
                end = window.find(b"\r\n\r\n")
                self.head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self.tail))
                self.tail = window[-3:]
                if self.head_bytes > self.max_head_bytes:
                    self._refuse(431, f"request headers larger than {self.max_head_bytes} bytes")
                    return
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                if isinstance(exc.__context__, _TooManyHeadersError):
                    self._refuse(431, f"more than {self.max_headers} request headers")
                    return
                self.watching = False  # malformed, or an upgrade: uvicorn's to answer
                self._stop_timer()
        self.inner.data_received(data)

    # The watching parser's callbacks: where each request's head begins and ends.

    def on_message_begin(self) -> None:
        self.reading_head = self.began = True
        self.headers = 0
        self.target = b""
        self._start_timer()

    def on_url(self, url: bytes) -> None:
        self.target = (self.target + url)[:64]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += 1
        if self.headers > self.max_headers:
            raise _TooManyHeadersError  # stops the parser: refused in `data_received`

    def on_headers_complete(self) -> None:
        self.reading_head = self.began = False
        self.head_bytes = 0  # the next request's head is counted afresh
        self.tail = b""
        self._stop_timer()

    def _start_timer(self) -> None:
        self._stop_timer()
        self.timer = self.loop.call_later(self.head_timeout, self._too_slow)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _too_slow(self) -> None:
        self.timer = None
        if self.reading_head and self.began:
            self._refuse(408, f"request headers not received within {self.head_timeout:g} s")
        elif self.reading_head and self.transport is not None and self.head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error and close the connection; read nothing more."""
        self._stop_timer()
        self.refused = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        path = self.target.split(b"?", 1)[0].decode("latin-1")
        body = error_body([message], None, path)
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        transport.write(b"".join(head) + body)
        # A lingering close, as nginx does: closing while the client still sends would reset
        # the connection and lose the answer, so drop what arrives for a moment, then close.
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(_LINGER, transport.close)
        log.warning("refused a request's head: %s", message)


def configure(max_head_bytes: int, max_headers: int, head_timeout: float) -> None:
    """Set the limits for this process's connections (each worker sets its own at start)."""
    HeadLimits.max_head_bytes = max_head_bytes
    HeadLimits.max_headers = max_headers
    HeadLimits.head_timeout = head_timeout
