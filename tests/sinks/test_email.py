"""Email: multipart text + escaped HTML, injection-proof headers, threaded per alert."""

from __future__ import annotations

import email
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from sinks.base import DeliveryError
from sinks.delivery import Deliverer
from sinks.email import EmailSink
from tests.sinks.conftest import make_alert
from tests.sinks.fakes import FakeSmtp, free_port

TO = ("oncall@example.com", "team@example.com")
SMTP_PASSWORD = "smtp-pass-SECRET-42"


def _sink(server: FakeSmtp, **kwargs) -> EmailSink:  # type: ignore[no-untyped-def]
    options = {"sender": "Prodmon <alerts@example.com>", "recipients": TO, "tls": "none"}
    return EmailSink("127.0.0.1", server.port, **(options | kwargs))


def _parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


@pytest.fixture
def smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    return cert, key


def _contexts(tls_files: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tls_files
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_multipart_message_with_escaped_html_and_no_header_injection(
    smtp: FakeSmtp,
) -> None:
    alert = make_alert(
        title="Boom\r\nBcc: victim@x",
        summary="boom\r\nBcc: victim@x\r\n\r\n<b>bold</b> <script>alert(1)</script> & co",
        notes="<i>note</i>",
        evidence={"message": "<img src=x onerror=alert(1)>"},
    )
    await _sink(smtp).send(alert)

    [mail] = smtp.mails
    assert mail.rcpt_tos == list(TO)  # the envelope: configured recipients only
    assert mail.mail_from == "alerts@example.com"
    msg = _parsed(mail.content)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[prodmon] [CRITICAL] checkout: Boom Bcc: victim@x"
    assert b"\nBcc:" not in mail.content.split(b"\r\n\r\n", 1)[0]
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    html = html_part.get_content()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert "&lt;i&gt;note&lt;/i&gt;" in html
    assert "&amp; co" in html
    assert "<b>bold</b>" in text_part.get_content()  # plain text is not interpreted


async def test_transitions_of_one_alert_thread_together(smtp: FakeSmtp) -> None:
    sink = _sink(smtp)
    await sink.send(make_alert())
    await sink.send(make_alert(seq=2, transition="resolved", status="resolved"))
    await sink.send(make_alert(alert_id="other:rule:key"))

    first, resolved, other = (_parsed(m.content) for m in smtp.mails)
    assert first["Message-ID"] != resolved["Message-ID"]
    assert first["References"] == resolved["References"] == first["In-Reply-To"]
    assert other["References"] != first["References"]
    assert first["Subject"] == resolved["Subject"]
    assert first["Message-ID"].endswith("@example.com>")
    assert first["X-Prodmon-Transition"] == "firing"
    assert resolved["X-Prodmon-Transition"] == "resolved"
    # a retry of the same transition carries the same Message-ID (clients dedupe)
    assert sink.build_message(make_alert())["Message-ID"] == first["Message-ID"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_with_credentials_and_wrong_password_is_not_retryable() -> None:
    server = FakeSmtp(username="prodmon", password=SMTP_PASSWORD).start()
    try:
        await _sink(server, username="prodmon", password=SMTP_PASSWORD).send(make_alert())
        assert len(server.mails) == 1
        with pytest.raises(DeliveryError) as caught:
            await _sink(server, username="prodmon", password="wrong-password").send(make_alert())
        assert not caught.value.retryable and caught.value.status == 535
        assert "wrong-password" not in caught.value.reason
    finally:
        server.stop()


async def test_starttls_and_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    server_ctx, client_ctx = _contexts(tls_files)
    for mode, server in [
        ("starttls", FakeSmtp(starttls_context=server_ctx)),
        ("tls", FakeSmtp(implicit_tls_context=server_ctx)),
    ]:
        server.start()
        try:
            await _sink(server, tls=mode, tls_context=client_ctx).send(make_alert())
            assert len(server.mails) == 1, mode
        finally:
            server.stop()


async def test_starttls_required_but_server_plain_is_not_retryable(smtp: FakeSmtp) -> None:
    with pytest.raises(DeliveryError) as caught:
        await _sink(smtp, tls="starttls").send(make_alert())
    assert not caught.value.retryable


async def test_temporary_smtp_reply_is_retried_permanent_is_not(
    smtp: FakeSmtp, deliverer_for: Callable[..., Deliverer]
) -> None:
    deliverer = deliverer_for({"email": _sink(smtp)})
    smtp.handler.next_replies.append("451 4.3.0 try again later")
    first = await deliverer.deliver(make_alert(), "email")
    smtp.handler.next_replies.append("554 5.7.1 rejected")
    second = await deliverer.deliver(make_alert(seq=2), "email")

    assert (first.status, first.attempts) == ("delivered", 2)
    assert (second.status, second.attempts) == ("failed", 1)
    assert second.reason == "SMTP 554: 5.7.1 rejected"


async def test_refused_connection_is_retryable_until_give_up(
    deliverer_for: Callable[..., Deliverer],
) -> None:
    sink = EmailSink("127.0.0.1", free_port(), sender="a@example.com", recipients=TO, tls="none")
    outcome = await deliverer_for({"email": sink}, max_attempts=3).deliver(make_alert(), "email")
    assert (outcome.status, outcome.attempts) == ("gave_up", 3)
    assert outcome.reason is not None and outcome.reason.startswith("connection failed")
