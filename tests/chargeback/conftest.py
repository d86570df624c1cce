"""Fixtures of the close's tests.

- `smtp_server`: a real SMTP server (aiosmtpd) on loopback, on a free port, that keeps
  every message it is handed; Django's SMTP backend is pointed at it for the test.
- `smtp_server_down`: Django's SMTP backend pointed at a loopback port nothing listens on.
- `smtp_server_hanging`: one pointed at a port that takes the connection and never answers.
"""

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One message as the server took it: the envelope and the parsed mail."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()


@dataclass
class MailServer:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _smtp_settings(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = LOOPBACK, port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5  # seconds: a stuck test fails instead of hanging


@pytest.fixture
def smtp_server(settings) -> Iterator[MailServer]:
    """A real SMTP server on loopback that Django's mail goes to during the test."""
    server = MailServer(host=LOOPBACK, port=_free_port())
    controller = Controller(server, hostname=server.host, port=server.port)
    controller.start()
    _smtp_settings(settings, server.port)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server_down(settings) -> int:
    """Django's mail goes to a loopback port with no server behind it: connections are refused."""
    port = _free_port()
    _smtp_settings(settings, port)
    return port


@pytest.fixture
def smtp_server_hanging(settings) -> Iterator[int]:
    """Django's mail goes to a loopback port that takes the connection and never answers
    (no greeting): only EMAIL_TIMEOUT ends the wait."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)  # connections queue in the backlog; none is ever accepted
        port = listener.getsockname()[1]
        _smtp_settings(settings, port)
        yield port
