"""uvicorn's HTTP protocol with TCP_NODELAY and a deadline for request headers.

asyncio turns Nagle's algorithm off only for sockets it recognises as TCP, and the
listening socket uvicorn hands its worker processes is rebuilt without that mark, so
with --workers > 1 each response's second write waited for the client's delayed ACK
(40 ms on Linux). Setting the option here makes every worker answer at once.

uvicorn bounds the time between requests (keep-alive) but not the time a client takes
to send a request's headers, so a client that connects and trickles bytes would hold a
connection forever. Here the headers must be complete within HEADER_TIMEOUT seconds of
the connection or of the request's first byte (the body has its own deadline, in
rest.py); otherwise the answer is 408 with the protocol's error body, and the
connection is closed.

uvicorn writes a response's status line and headers, then its body, in two writes: two
sends, two TCP segments, and two wake-ups of the client for one small JSON answer. Each
request's cycle writes through ``_OneSend`` here, which holds the head back and sends it
with the first part of the body (a 100 Continue goes at once, as before; a HEAD request,
which has no body, is written as uvicorn writes it).

A request the HTTP parser refuses (a NUL or another control character in the request
line or a header, broken framing) never reaches the application: uvicorn answers 400
itself, in plain text. Here that answer carries the protocol's error body too.
"""

from __future__ import annotations

import socket

try:  # the faster parser, when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base

HEADER_TIMEOUT = 10.0  # create_app sets it from --body-timeout
_MALFORMED = (b'{"error":"the request is not valid HTTP/1.1: a NUL or another control character in its request '
              b'line or a header, or broken framing"}')
_400 = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(_MALFORMED)).encode() + b"\r\n\r\n" + _MALFORMED)
_TOO_SLOW = (b'{"error":"the request headers did not arrive in time"}')
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(_TOO_SLOW)).encode() + b"\r\n\r\n" + _TOO_SLOW)


class _OneSend:
    """A response cycle's transport: the head of the response is held and written with
    the first write after it (the body), or when the transport is closed."""
    __slots__ = ("_transport", "_held", "_sent")

    def __init__(self, transport):
        self._transport, self._held, self._sent = transport, None, False

    def write(self, data) -> None:
        if self._sent or data.startswith(b"HTTP/1.1 1"):  # after the head; or 100 Continue
            self._transport.write(data)
        elif self._held is None:
            self._held = data
        else:
            self._transport.write(self._held + data)
            self._held, self._sent = None, True

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class NoDelayProtocol(_Base):
    _header_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        # the cycle just made for this request (an upgrade makes none); its task has not run
        # yet. Not for HEAD: uvicorn writes no body for it, and the head would wait for one.
        if cycle is not None and cycle.scope is self.scope and self.scope.get("method") != "HEAD" \
                and not isinstance(cycle.transport, _OneSend):
            cycle.transport = _OneSend(self.transport)

    def _headers_too_slow(self) -> None:
        # armed only while a request's headers are incomplete (or none has started)
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_408)
        self.transport.close()  # mid-response (a pipelined request trickling): just close

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_400)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
