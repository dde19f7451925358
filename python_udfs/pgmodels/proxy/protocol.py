"""uvicorn's HTTP protocol with TCP_NODELAY on every connection.

asyncio turns Nagle's algorithm off only for sockets it recognises as TCP, and the
listening socket uvicorn hands its worker processes is rebuilt without that mark, so
with --workers > 1 each response's second write waited for the client's delayed ACK
(40 ms on Linux). Setting the option here makes every worker answer at once.
"""

from __future__ import annotations

import socket

try:  # the faster parser, when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base


class NoDelayProtocol(_Base):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
