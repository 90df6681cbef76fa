"""Sink settings, read only from the environment, and the sinks built from them.

Every credential-bearing value (webhook URLs, routing key, SMTP password, webhook secret,
SMS auth token) is a secret: a bad value raises `SinkConfigError` naming the variable and
never quoting the value, and `repr()`/`str()` of the settings and of the sinks show only a
URL's scheme and host. (`dataclasses.asdict` would expose them: use `redacted()`.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp

from sinks.base import Sink
from sinks.dryrun import DryRunSink
from sinks.email import EmailSink, TlsMode
from sinks.http import is_loopback, url_origin
from sinks.log import LogSink
from sinks.pagerduty import DEFAULT_EVENTS_URL, PagerDutySink
from sinks.slack import SlackSink
from sinks.sms import SmsSink
from sinks.webhook import WebhookSink

__all__ = [
    "DEFAULT_SMS_BASE_URL",
    "ENV_VARS",
    "EmailSettings",
    "PagerDutySettings",
    "SinkConfigError",
    "SinkSettings",
    "SlackSettings",
    "SmsSettings",
    "WebhookSettings",
    "build_sinks",
]

DEFAULT_SMS_BASE_URL = "https://api.twilio.com"
DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
MIN_WEBHOOK_SECRET = 16

ENV_VARS = (
    "PRODMON_SLACK_WEBHOOK_URL",
    "PRODMON_PAGERDUTY_ROUTING_KEY",
    "PRODMON_PAGERDUTY_EVENTS_URL",
    "PRODMON_SMTP_HOST",
    "PRODMON_SMTP_PORT",
    "PRODMON_SMTP_USERNAME",
    "PRODMON_SMTP_PASSWORD",
    "PRODMON_SMTP_TLS",
    "PRODMON_EMAIL_FROM",
    "PRODMON_EMAIL_TO",
    "PRODMON_WEBHOOK_URL",
    "PRODMON_WEBHOOK_SECRET",
    "PRODMON_SMS_BASE_URL",
    "PRODMON_SMS_ACCOUNT_SID",
    "PRODMON_SMS_AUTH_TOKEN",
    "PRODMON_SMS_FROM",
    "PRODMON_SMS_TO",
)

_ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{32}$")
_ACCOUNT_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ]{0,10}$")
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.?[A-Za-z0-9-]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,253}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SinkConfigError(ValueError):
    """A sink setting that cannot be used; the message names the variable."""


def _mask(secret: str | None) -> str:
    return "***" if secret else "-"


@dataclass(frozen=True, repr=False)
class SlackSettings:
    webhook_url: str

    def __repr__(self) -> str:
        return f"SlackSettings(webhook={url_origin(self.webhook_url)}/***)"


@dataclass(frozen=True, repr=False)
class PagerDutySettings:
    routing_key: str
    events_url: str = DEFAULT_EVENTS_URL

    def __repr__(self) -> str:
        return f"PagerDutySettings(routing_key=***, events={url_origin(self.events_url)})"


@dataclass(frozen=True, repr=False)
class EmailSettings:
    host: str
    port: int
    tls: TlsMode
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return (
            f"EmailSettings(host={self.host!r}, port={self.port}, tls={self.tls!r}, "
            f"sender={self.sender!r}, recipients={list(self.recipients)!r}, "
            f"username={self.username!r}, password={_mask(self.password)})"
        )


@dataclass(frozen=True, repr=False)
class WebhookSettings:
    url: str
    secret: str

    def __repr__(self) -> str:
        return f"WebhookSettings(url={url_origin(self.url)}/***, secret=***)"


@dataclass(frozen=True, repr=False)
class SmsSettings:
    base_url: str
    account_sid: str
    auth_token: str
    sender: str
    recipients: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"SmsSettings(base={url_origin(self.base_url)}, account_sid=…{self.account_sid[-4:]}, "
            f"auth_token=***, sender={self.sender!r}, recipients={len(self.recipients)})"
        )


@dataclass(frozen=True)
class SinkSettings:
    """Which channels are configured, and how. Unconfigured channels are None."""

    slack: SlackSettings | None = None
    pagerduty: PagerDutySettings | None = None
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    sms: SmsSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SinkSettings:
        """Read the `PRODMON_*` sink variables (see ENV_VARS); empty means unset."""
        source = os.environ if env is None else env
        values = {name: source[name].strip() for name in ENV_VARS if source.get(name, "").strip()}
        return cls(
            slack=_slack(values),
            pagerduty=_pagerduty(values),
            email=_email(values),
            webhook=_webhook(values),
            sms=_sms(values),
        )

    def channels(self) -> tuple[str, ...]:
        """Configured channels, `log` always last."""
        names = ("slack", "pagerduty", "email", "webhook", "sms")
        return (*(n for n in names if getattr(self, n) is not None), "log")

    def redacted(self) -> dict[str, Any]:
        """Channel -> secret-free description, safe to log or print."""
        return {n: repr(getattr(self, n)) for n in self.channels() if n != "log"}


def _require(values: Mapping[str, str], names: tuple[str, ...], because: str) -> None:
    for name in names:
        if name not in values:
            raise SinkConfigError(f"{name}: required when {because} is set")


def _url(values: Mapping[str, str], name: str) -> str:
    """A URL that must be https (http only to a loopback host); never quoted in errors."""
    raw = values[name]
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise SinkConfigError(f"{name}: not a valid URL (value not shown)") from None
    if _CONTROL.search(raw) or " " in raw or not parts.hostname:
        raise SinkConfigError(f"{name}: not a valid URL (value not shown)")
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return raw
    if parts.scheme != "https":
        raise SinkConfigError(
            f"{name}: must be an https:// URL (http:// only to a loopback host; value not shown)"
        )
    return raw


def _slack(values: Mapping[str, str]) -> SlackSettings | None:
    if "PRODMON_SLACK_WEBHOOK_URL" not in values:
        return None
    return SlackSettings(_url(values, "PRODMON_SLACK_WEBHOOK_URL"))


def _pagerduty(values: Mapping[str, str]) -> PagerDutySettings | None:
    if "PRODMON_PAGERDUTY_EVENTS_URL" in values:
        _require(values, ("PRODMON_PAGERDUTY_ROUTING_KEY",), "PRODMON_PAGERDUTY_EVENTS_URL")
    if "PRODMON_PAGERDUTY_ROUTING_KEY" not in values:
        return None
    if not _ROUTING_KEY.match(values["PRODMON_PAGERDUTY_ROUTING_KEY"]):
        raise SinkConfigError(
            "PRODMON_PAGERDUTY_ROUTING_KEY: expected a 32-character integration key "
            "(letters and digits; value not shown)"
        )
    events_url = DEFAULT_EVENTS_URL
    if "PRODMON_PAGERDUTY_EVENTS_URL" in values:
        events_url = _url(values, "PRODMON_PAGERDUTY_EVENTS_URL")
    return PagerDutySettings(values["PRODMON_PAGERDUTY_ROUTING_KEY"], events_url)


def _address(name: str, raw: str) -> str:
    if _CONTROL.search(raw):
        raise SinkConfigError(f"{name}: control characters are not allowed")
    display, addr = parseaddr(raw)
    if not _ADDRESS.match(addr):
        raise SinkConfigError(f"{name}: {raw[:100]!r} is not an email address")
    return raw if display else addr


def _email(values: Mapping[str, str]) -> EmailSettings | None:
    names = [n for n in values if n.startswith(("PRODMON_SMTP_", "PRODMON_EMAIL_"))]
    if not names:
        return None
    _require(values, ("PRODMON_SMTP_HOST", "PRODMON_EMAIL_FROM", "PRODMON_EMAIL_TO"), names[0])
    host = values["PRODMON_SMTP_HOST"]
    if not _HOSTNAME.match(host):
        raise SinkConfigError(f"PRODMON_SMTP_HOST: {host[:100]!r} is not a host name")
    tls = values.get("PRODMON_SMTP_TLS", "starttls").lower()
    if tls not in DEFAULT_SMTP_PORTS:
        raise SinkConfigError(f"PRODMON_SMTP_TLS: {tls[:20]!r} is not one of starttls, tls, none")
    port = DEFAULT_SMTP_PORTS[tls]
    if "PRODMON_SMTP_PORT" in values:
        raw = values["PRODMON_SMTP_PORT"]
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise SinkConfigError(f"PRODMON_SMTP_PORT: {raw[:20]!r} is not a port (1-65535)")
        port = int(raw)
    username = values.get("PRODMON_SMTP_USERNAME")
    password = values.get("PRODMON_SMTP_PASSWORD")
    if username and not password:
        raise SinkConfigError("PRODMON_SMTP_PASSWORD: required when PRODMON_SMTP_USERNAME is set")
    if password and not username:
        raise SinkConfigError("PRODMON_SMTP_USERNAME: required when PRODMON_SMTP_PASSWORD is set")
    if username and _CONTROL.search(username):
        raise SinkConfigError("PRODMON_SMTP_USERNAME: control characters are not allowed")
    if password and tls == "none" and not is_loopback(host):
        raise SinkConfigError(
            "PRODMON_SMTP_TLS: 'none' would send the SMTP password in clear text; "
            "use starttls or tls (plain SMTP with credentials only to a loopback host)"
        )
    sender = _address("PRODMON_EMAIL_FROM", values["PRODMON_EMAIL_FROM"])
    recipients = tuple(
        _address("PRODMON_EMAIL_TO", part.strip())
        for part in values["PRODMON_EMAIL_TO"].split(",")
        if part.strip()
    )
    if not recipients:
        raise SinkConfigError("PRODMON_EMAIL_TO: expected a comma-separated list of addresses")
    mode = cast(TlsMode, tls)
    return EmailSettings(host, port, mode, sender, recipients, username, password)


def _webhook(values: Mapping[str, str]) -> WebhookSettings | None:
    if "PRODMON_WEBHOOK_SECRET" in values:
        _require(values, ("PRODMON_WEBHOOK_URL",), "PRODMON_WEBHOOK_SECRET")
    if "PRODMON_WEBHOOK_URL" not in values:
        return None
    url = _url(values, "PRODMON_WEBHOOK_URL")
    _require(values, ("PRODMON_WEBHOOK_SECRET",), "PRODMON_WEBHOOK_URL")
    if len(values["PRODMON_WEBHOOK_SECRET"]) < MIN_WEBHOOK_SECRET:
        raise SinkConfigError(
            f"PRODMON_WEBHOOK_SECRET: must be at least {MIN_WEBHOOK_SECRET} characters "
            "(value not shown)"
        )
    return WebhookSettings(url, values["PRODMON_WEBHOOK_SECRET"])


def _sms(values: Mapping[str, str]) -> SmsSettings | None:
    names = [n for n in values if n.startswith("PRODMON_SMS_")]
    if not names:
        return None
    _require(
        values,
        ("PRODMON_SMS_ACCOUNT_SID", "PRODMON_SMS_AUTH_TOKEN", "PRODMON_SMS_FROM", "PRODMON_SMS_TO"),
        names[0],
    )
    base_url = DEFAULT_SMS_BASE_URL
    if "PRODMON_SMS_BASE_URL" in values:
        base_url = _url(values, "PRODMON_SMS_BASE_URL")
    sid = values["PRODMON_SMS_ACCOUNT_SID"]
    if not _ACCOUNT_SID.match(sid):
        raise SinkConfigError("PRODMON_SMS_ACCOUNT_SID: expected letters and digits only")
    if _CONTROL.search(values["PRODMON_SMS_AUTH_TOKEN"]):
        raise SinkConfigError("PRODMON_SMS_AUTH_TOKEN: control characters are not allowed")
    sender = values["PRODMON_SMS_FROM"]
    if not (_E164.match(sender) or _SENDER_ID.match(sender)):
        raise SinkConfigError(
            f"PRODMON_SMS_FROM: {sender[:20]!r} is not an E.164 number (+15551234567) "
            "or an alphanumeric sender id (up to 11 characters)"
        )
    recipients = tuple(part.strip() for part in values["PRODMON_SMS_TO"].split(",") if part.strip())
    bad = [r for r in recipients if not _E164.match(r)]
    if bad or not recipients:
        shown = repr(bad[0][:20]) if bad else "empty"
        raise SinkConfigError(
            f"PRODMON_SMS_TO: {shown} is not an E.164 number (comma-separated, e.g. +15551234567)"
        )
    return SmsSettings(base_url, sid, values["PRODMON_SMS_AUTH_TOKEN"], sender, recipients)


def build_sinks(
    settings: SinkSettings, session: aiohttp.ClientSession, *, dry_run: bool = False
) -> dict[str, Sink]:
    """channel -> sink for each configured channel plus `log`; with `dry_run`, every sink
    (log included) is a `DryRunSink` around the real one and nothing is sent."""
    sinks: dict[str, Sink] = {}
    if settings.slack:
        sinks["slack"] = SlackSink(session, settings.slack.webhook_url)
    if settings.pagerduty:
        pd = settings.pagerduty
        sinks["pagerduty"] = PagerDutySink(session, pd.routing_key, pd.events_url)
    if settings.email:
        mail = settings.email
        sinks["email"] = EmailSink(
            mail.host,
            mail.port,
            sender=mail.sender,
            recipients=mail.recipients,
            tls=mail.tls,
            username=mail.username,
            password=mail.password,
        )
    if settings.webhook:
        sinks["webhook"] = WebhookSink(session, settings.webhook.url, settings.webhook.secret)
    if settings.sms:
        sms = settings.sms
        sinks["sms"] = SmsSink(
            session, sms.base_url, sms.account_sid, sms.auth_token, sms.sender, sms.recipients
        )
    sinks["log"] = LogSink()
    if dry_run:
        return {channel: DryRunSink(channel, sink) for channel, sink in sinks.items()}
    return sinks
