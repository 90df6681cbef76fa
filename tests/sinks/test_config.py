"""Settings from the environment: precise errors that never quote a secret, secret-free reprs."""

from __future__ import annotations

import aiohttp
import pytest

from sinks.config import SinkConfigError, SinkSettings, build_sinks
from sinks.dryrun import DryRunSink
from sinks.email import EmailSink
from sinks.log import LogSink
from sinks.pagerduty import DEFAULT_EVENTS_URL, PagerDutySink
from sinks.slack import SlackSink
from sinks.sms import SmsSink
from sinks.webhook import WebhookSink

SECRETS = {
    "slack": "SlackPathSecret123",
    "routing": "abcdefABCDEF0123456789SecretKey0",  # 32 characters
    "smtp": "SmtpPasswordSecret!",
    "hook_path": "HookPathSecret456",
    "hook": "WebhookSharedSecret789",
    "sms": "SmsAuthTokenSecret000",
}

FULL_ENV = {
    "PRODMON_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/T1/B2/{SECRETS['slack']}",
    "PRODMON_PAGERDUTY_ROUTING_KEY": SECRETS["routing"],
    "PRODMON_SMTP_HOST": "smtp.example.com",
    "PRODMON_SMTP_USERNAME": "prodmon",
    "PRODMON_SMTP_PASSWORD": SECRETS["smtp"],
    "PRODMON_EMAIL_FROM": "Prodmon <alerts@example.com>",
    "PRODMON_EMAIL_TO": "oncall@example.com, team@example.com",
    "PRODMON_WEBHOOK_URL": f"https://hooks.example.com/in/{SECRETS['hook_path']}?x=1",
    "PRODMON_WEBHOOK_SECRET": SECRETS["hook"],
    "PRODMON_SMS_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
    "PRODMON_SMS_AUTH_TOKEN": SECRETS["sms"],
    "PRODMON_SMS_FROM": "+15550000000",
    "PRODMON_SMS_TO": "+15551230001,+15551230002",
    "UNRELATED": "ignored",
}


def test_full_environment_configures_every_channel() -> None:
    settings = SinkSettings.from_env(FULL_ENV)
    assert settings.channels() == ("slack", "pagerduty", "email", "webhook", "sms", "log")
    assert settings.pagerduty is not None and settings.pagerduty.events_url == DEFAULT_EVENTS_URL
    assert settings.email is not None
    assert (settings.email.port, settings.email.tls) == (587, "starttls")
    assert settings.email.recipients == ("oncall@example.com", "team@example.com")
    assert settings.sms is not None and settings.sms.base_url == "https://api.twilio.com"


def test_empty_environment_has_only_the_log_channel() -> None:
    settings = SinkSettings.from_env({"PRODMON_SLACK_WEBHOOK_URL": "  "})
    assert settings.channels() == ("log",)


async def test_build_sinks_makes_one_sink_per_configured_channel() -> None:
    async with aiohttp.ClientSession() as session:
        sinks = build_sinks(SinkSettings.from_env(FULL_ENV), session)
        kinds = {name: type(sink) for name, sink in sinks.items()}
        assert kinds == {
            "slack": SlackSink,
            "pagerduty": PagerDutySink,
            "email": EmailSink,
            "webhook": WebhookSink,
            "sms": SmsSink,
            "log": LogSink,
        }
        assert all(sink.channel == name for name, sink in sinks.items())
        assert sinks["slack"].destination == "hooks.slack.com"
        assert sinks["email"].destination == "smtp.example.com:587"
        dry = build_sinks(SinkSettings.from_env(FULL_ENV), session, dry_run=True)
        assert all(isinstance(s, DryRunSink) for s in dry.values()) and dry.keys() == sinks.keys()
        assert build_sinks(SinkSettings(), session).keys() == {"log"}


async def test_no_repr_or_str_shows_a_secret() -> None:
    settings = SinkSettings.from_env(FULL_ENV)
    async with aiohttp.ClientSession() as session:
        sinks = build_sinks(settings, session)
        shown = " ".join(
            [repr(settings), str(settings), str(settings.redacted())]
            + [repr(s) for s in sinks.values()]
            + [repr(s) for s in build_sinks(settings, session, dry_run=True).values()]
        )
    for secret in SECRETS.values():
        assert secret not in shown
    assert "https://hooks.slack.com/***" in shown and "routing_key=***" in shown


@pytest.mark.parametrize(
    ("change", "variable", "secret"),
    [
        (
            {"PRODMON_SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/x/SECRETVALUE"},
            "PRODMON_SLACK_WEBHOOK_URL",
            "SECRETVALUE",
        ),
        (
            {"PRODMON_SLACK_WEBHOOK_URL": "not a url SECRETVALUE"},
            "PRODMON_SLACK_WEBHOOK_URL",
            "SECRETVALUE",
        ),
        (
            {"PRODMON_PAGERDUTY_ROUTING_KEY": "SECRETVALUE-too-short"},
            "PRODMON_PAGERDUTY_ROUTING_KEY",
            "SECRETVALUE",
        ),
        (
            {"PRODMON_PAGERDUTY_EVENTS_URL": "ftp://x/SECRETVALUE"},
            "PRODMON_PAGERDUTY_EVENTS_URL",
            "SECRETVALUE",
        ),
        ({"PRODMON_SMTP_PORT": "99999"}, "PRODMON_SMTP_PORT", None),
        ({"PRODMON_SMTP_TLS": "ssl"}, "PRODMON_SMTP_TLS", None),
        ({"PRODMON_SMTP_TLS": "none"}, "PRODMON_SMTP_TLS", SECRETS["smtp"]),
        ({"PRODMON_SMTP_PASSWORD": ""}, "PRODMON_SMTP_PASSWORD", None),
        ({"PRODMON_EMAIL_TO": "oncall@example.com, nobody"}, "PRODMON_EMAIL_TO", None),
        ({"PRODMON_EMAIL_FROM": ""}, "PRODMON_EMAIL_FROM", None),
        ({"PRODMON_WEBHOOK_SECRET": "SECRETVALUE"}, "PRODMON_WEBHOOK_SECRET", "SECRETVALUE"),
        ({"PRODMON_WEBHOOK_SECRET": ""}, "PRODMON_WEBHOOK_SECRET", None),
        ({"PRODMON_SMS_TO": "+15551230001,5551230002"}, "PRODMON_SMS_TO", None),
        ({"PRODMON_SMS_AUTH_TOKEN": ""}, "PRODMON_SMS_AUTH_TOKEN", None),
        ({"PRODMON_SMS_ACCOUNT_SID": "AC/../x"}, "PRODMON_SMS_ACCOUNT_SID", None),
        (
            {"PRODMON_SMS_BASE_URL": "http://example.com/SECRETVALUE"},
            "PRODMON_SMS_BASE_URL",
            "SECRETVALUE",
        ),
    ],
)
def test_bad_value_names_the_variable_and_never_quotes_a_secret(
    change: dict[str, str], variable: str, secret: str | None
) -> None:
    with pytest.raises(SinkConfigError) as caught:
        SinkSettings.from_env(FULL_ENV | change)
    message = str(caught.value)
    assert message.startswith(variable), message
    assert isinstance(caught.value, ValueError)
    if secret:
        assert secret not in message


def test_partial_channel_config_names_what_is_missing() -> None:
    with pytest.raises(SinkConfigError, match=r"^PRODMON_SMS_AUTH_TOKEN: required"):
        SinkSettings.from_env({"PRODMON_SMS_ACCOUNT_SID": "AC1", "PRODMON_SMS_TO": "+1555"})
    with pytest.raises(SinkConfigError, match=r"^PRODMON_WEBHOOK_URL: required"):
        SinkSettings.from_env({"PRODMON_WEBHOOK_SECRET": "x" * 20})
    with pytest.raises(SinkConfigError, match=r"^PRODMON_PAGERDUTY_ROUTING_KEY: required"):
        SinkSettings.from_env({"PRODMON_PAGERDUTY_EVENTS_URL": "https://pd.example.com/e"})


def test_loopback_allows_plain_http_and_plain_smtp_with_credentials() -> None:
    settings = SinkSettings.from_env(
        {
            "PRODMON_SLACK_WEBHOOK_URL": "http://127.0.0.1:9999/services/x",
            "PRODMON_SMTP_HOST": "localhost",
            "PRODMON_SMTP_TLS": "none",
            "PRODMON_SMTP_USERNAME": "u",
            "PRODMON_SMTP_PASSWORD": "p",
            "PRODMON_EMAIL_FROM": "a@example.com",
            "PRODMON_EMAIL_TO": "b@example.com",
        }
    )
    assert settings.email is not None and settings.email.port == 25
    assert settings.slack is not None
