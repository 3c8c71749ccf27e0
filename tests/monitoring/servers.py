"""Real servers on 127.0.0.1 for delivery tests: a scripted HTTP receiver (http.server in a thread, so no pytest
plugin is needed) and an SMTP server (aiosmtpd) with LOGIN/PLAIN authentication."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = 0.0  # time.monotonic() when the request arrived


@dataclass
class WebhookReceiver:
    """Answers each POST with the next scripted status (200 once the script is used up) and records it; a script
    entry is a status or (status, response headers)."""

    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)  # seconds to wait before answering, per request
    url: str = ""

    def next_answer(self) -> tuple[int, dict[str, str]]:
        entry = self.script.pop(0) if self.script else 200
        return (entry, {}) if isinstance(entry, int) else entry


@contextmanager
def webhook_receiver(script: list[int | tuple[int, dict[str, str]]] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(script=list(script or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrived = time.monotonic()
            with lock:
                status, headers = receiver.next_answer()
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body, status, arrived))
                delay = receiver.delays.pop(0) if receiver.delays else 0.0
            if delay:
                threading.Event().wait(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.box.envelopes.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(user: str, password: str) -> Iterator[Mailbox]:
    box = Mailbox()

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
        if ok:
            box.logins.append(user)
        return AuthResult(success=ok, handled=False)  # the server then answers 235 or 535

    box.port = _free_port()
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=box.port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
