"""Real servers on 127.0.0.1 for delivery tests: a scripted HTTP receiver (http.server in a thread, so no pytest
plugin is needed), SMTP servers (aiosmtpd) with LOGIN/PLAIN authentication, in clear text or over STARTTLS / SSL
with a throwaway CA made here (``cryptography``), and a TCP relay recording what crosses the wire."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    auth_over_tls: list[bool] = field(default_factory=list)
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


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: Path, *, name: str = "test") -> TlsFiles:
    """A CA (its own key) and a 127.0.0.1/localhost server certificate it signed, written under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    certs = TlsFiles(directory / f"{name}-ca.pem", directory / f"{name}-server.pem",
                             directory / f"{name}-server.key")
    certs.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return certs


@contextmanager
def tls_smtp_server(user: str, password: str, certs: TlsFiles,
                    security: str) -> Iterator[Mailbox]:
    """An SMTP server requiring AUTH, and AUTH only over TLS: ``starttls`` (STARTTLS required before anything
    else) or ``ssl`` (TLS from the first byte). ``box.auth_over_tls`` records, per AUTH, whether TLS was up."""
    box = Mailbox()

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        transport = server.transport
        box.auth_over_tls.append(session.ssl is not None
                                 or (transport is not None and transport.get_extra_info("ssl_object") is not None))
        ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
        if ok:
            box.logins.append(user)
        return AuthResult(success=ok, handled=False)

    box.port = _free_port()
    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": True}
    if security == "starttls":
        kwargs.update(tls_context=certs.server_context(), require_starttls=True)
    elif security == "ssl":
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls and would not offer AUTH on an implicit-TLS
        # connection; here every byte is inside TLS anyway (auth_over_tls and the wire recorder check it).
        kwargs.update(ssl_context=certs.server_context(), auth_require_tls=False)
    else:
        raise ValueError(f"security={security!r}: starttls or ssl")
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=box.port, **kwargs)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Wire:
    """Every byte a :func:`tcp_recorder` forwarded, client to server and back."""

    client_to_server: bytearray = field(default_factory=bytearray)
    server_to_client: bytearray = field(default_factory=bytearray)
    port: int = 0


@contextmanager
def tcp_recorder(target_port: int) -> Iterator[Wire]:
    """A TCP relay on 127.0.0.1 to ``target_port`` that records what crosses it: what an eavesdropper sees."""
    wire = Wire()
    listener = socket.create_server(("127.0.0.1", 0))
    wire.port = int(listener.getsockname()[1])
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket, into: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                into.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pump, args=(client, server, wire.client_to_server), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, wire.server_to_client), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield wire
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
