"""Notifier sinks and their shared delivery machinery.

One module per destination behind one small protocol (`sinks.base.Sink`); retry, backoff,
circuit breaker, rate limit and the delivery record are written once (`sinks.delivery`).

    base        Sink protocol, DeliveryError, DeliveryOutcome (-> `deliveries` topic)
    delivery    Deliverer, DeliveryPolicy, RateLimit
    backoff     full-jitter backoff, Retry-After handling
    breaker     CircuitBreaker (per destination)
    ratelimit   TokenBucket (per channel)
    http        one POST -> success or a DeliveryError (retryable or not)
    text        bounding, one-lining and formatting alert fields
    slack, email, pagerduty, webhook, sms, log    the channels
    dryrun      DryRunSink: records what would have been sent
    config      SinkSettings.from_env, build_sinks
"""

from sinks.base import Alert, DeliveryError, DeliveryOutcome, DeliveryStatus, Sink
from sinks.config import SinkConfigError, SinkSettings, build_sinks
from sinks.delivery import Deliverer, DeliveryPolicy, RateLimit
from sinks.dryrun import DryRunSink

__all__ = [
    "Alert",
    "Deliverer",
    "DeliveryError",
    "DeliveryOutcome",
    "DeliveryPolicy",
    "DeliveryStatus",
    "DryRunSink",
    "RateLimit",
    "Sink",
    "SinkConfigError",
    "SinkSettings",
    "build_sinks",
]
