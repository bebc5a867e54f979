"""Built-in notifier: e-mail over SMTP (``smtplib``), one message per recipient.

Host, port, sender, STARTTLS and user name come from the settings; the password only from
the environment variable ``BEAR_SMTP_PASSWORD``. Addresses are validated (a single plain
address, no line breaks), so a recipient can never inject headers.

Credentials never travel in clear: a user name is only sent after STARTTLS, and STARTTLS
verifies the server's certificate and host name (against the system's CAs, or the bundle
named by ``$BEAR_SMTP_CA_FILE`` for a private CA). Without TLS the e-mail is refused before
BEAR connects, naming why.
"""

from __future__ import annotations

import datetime as dt
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from bear.config import is_email
from bear.errors import BearError
from bear.markers import hookimpl
from bear.models import NotifierOptions, RunSummary
from bear.plugins.messages import compose

TIMEOUT_S = 10  # per connection attempt; the outbox abandons an attempt after 10 s too


def tls_context() -> ssl.SSLContext:
    """The context STARTTLS uses: certificates and host names verified."""
    cafile = os.environ.get("BEAR_SMTP_CA_FILE") or None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise BearError(f"cannot read $BEAR_SMTP_CA_FILE {cafile!r}: {exc}") from None


def send(settings: Any, recipient: str, subject: str, text: str, page: str) -> None:
    """Send one e-mail now; raises on any problem (the outbox keeps it for a retry)."""
    if not settings.smtp_host:
        raise BearError("smtp_host is not set; the e-mail stays in the outbox")
    if settings.smtp_username and not settings.smtp_starttls:
        raise BearError(
            f"not sending to {settings.smtp_host}:{settings.smtp_port}: the SMTP user name and "
            "password are only sent over TLS, and smtp_starttls is off; turn it on"
        )
    if not is_email(recipient):
        raise BearError(f"{recipient!r} is not a valid e-mail address")
    msg = EmailMessage()
    msg["From"] = settings.smtp_sender
    msg["To"] = recipient
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    msg["Message-ID"] = make_msgid(domain="bear.local")
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    with smtplib.SMTP(settings.smtp_host, int(settings.smtp_port), timeout=TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=tls_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, os.environ.get("BEAR_SMTP_PASSWORD", ""))
        smtp.send_message(msg)


def _deliver(kind: str, summary: RunSummary, error: str = "") -> None:
    settings = summary.settings
    if settings is None:
        raise BearError("no settings were handed to the e-mail notifier")
    subject, text, page = compose(kind, summary, error)
    for recipient in summary.recipients:
        send(settings, recipient, subject, text, page)


@hookimpl
def bear_notifier_options() -> NotifierOptions:
    # the outbox owes one e-mail per recipient, each retried on its own
    return NotifierOptions(per_recipient=True, description="e-mail over SMTP")


@hookimpl
def bear_send_test_notification(settings: Any, recipient: str) -> str:
    now = dt.datetime.now()
    text = (
        "This is a test e-mail from BEAR. If you can read it, the SMTP settings work.\n"
        f"Sent at {now:%Y-%m-%d %H:%M:%S}.\n"
    )
    page = (
        "<html><body><p>This is a test e-mail from BEAR. The SMTP settings work.</p></body></html>"
    )
    try:
        send(settings, recipient, "BEAR test e-mail", text, page)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        host = f"{settings.smtp_host}:{settings.smtp_port}"
        raise BearError(f"could not send through {host}: {type(exc).__name__}: {exc}") from exc
    return f"test e-mail sent to {recipient}"


@hookimpl
def bear_invoicing_finished(summary: RunSummary) -> None:
    _deliver("invoicing_finished", summary)


@hookimpl
def bear_run_failed(summary: RunSummary, error: str) -> None:
    _deliver("run_failed", summary, error)
