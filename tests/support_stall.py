"""A loopback TCP relay that can be told to stall: it keeps every connection open and accepts
new ones, but passes no byte on until released. In front of a server it makes the server look
hung (as a stopped PostgreSQL or a frozen S3 endpoint does) without touching the server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class StallingRelay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.stalled = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.stalled and not self._closed:
                    time.sleep(0.02)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release and cut every connection: shutdown, not just close, so that a thread
        blocked reading one (ours, or a client's) wakes up to the end of the stream."""
        self._closed = True
        self.stalled = False
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
