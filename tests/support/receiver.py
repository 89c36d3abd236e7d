"""A real HTTP webhook receiver on loopback (stdlib ``http.server`` in a thread).

It records every request (headers, exact body bytes, time) and answers from a script: each
entry of ``plan`` is used once, in order, then ``default``. An entry is a status code, or
``("sleep", seconds, status)`` to answer late (a receiver that times out), or ``("gate",
threading.Event, status)`` to answer once the test opens the gate, so a test can say
"fail twice, time out once, then come back".
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.ports import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    port: int
    plan: list = field(default_factory=list)
    default: int = 200
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def next_answer(self):
        with self.lock:
            return self.plan.pop(0) if self.plan else self.default

    def received(self, request: Received) -> None:
        with self.lock:
            self.requests.append(request)


def start_receiver(tls: tuple[str, str] | None = None) -> tuple[Receiver, ThreadingHTTPServer]:
    """A running receiver; ``tls``: (certificate chain file, key file) to serve HTTPS."""
    port = free_port()
    receiver = Receiver(port)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.received(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                       time.monotonic()))
            answer = receiver.next_answer()
            if isinstance(answer, tuple) and answer[0] == "gate":
                _, gate, answer = answer
                gate.wait(60)
            elif isinstance(answer, tuple):
                _, seconds, answer = answer
                time.sleep(seconds)
            try:
                self.send_response(answer)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up first

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"receiver:{port}", daemon=True).start()
    return receiver, server
