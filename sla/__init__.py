"""SLA evaluation and error budgets over closed rollup windows. Pure: no Kafka, clocks or I/O.

Inputs are rollups (one dict per series per closed window, see `schemas.rollups`). Only
server errors count as errors (`errors`, status >= 500); 4xx (`client_errors`) are the
caller's fault and never spend the service's budget. Percentiles over a period are merged
from histograms by the caller and handed in as numbers.

Uptime (windows-based SLI)
    Computed over the whole-service series (endpoint "*") at one resolution::

        uptime_pct = 100 * duration(good windows) / duration(windows with traffic)

    A window is good ("up") when the service answered (count > 0) and its error rate,
    100 * errors / count, did not exceed the error-rate threshold: the same test as an
    error-rate violation, so a window is up exactly when it would not breach the SLA on its
    own. Windows with no traffic (count == 0, or no rollup at all, since an idle series emits
    nothing) are excluded from numerator and denominator alike, as a request-based ratio SLI
    treats 0/0: they are evidence neither of service nor of failure. With no traffic in the
    whole period uptime is unknown (None), never 0 or 100. A service that silently stops
    receiving traffic is a traffic-drop anomaly (baseline stage, synthetic probes), not
    something request data can call downtime. Equal-length windows give exactly
    "n - k good of n".

Error budget (request-based)
    Over the trailing SLO period [now - period, now): error ratio = sum(errors) / sum(count).
    The budget is the allowed bad fraction, 1 - objective/100; consumed = error ratio / budget
    (1.0 = exactly spent); remaining = 1 - consumed, negative once overspent.

Burn rates (multi-window, multi-burn-rate, as in the Google SRE workbook)
    burn rate of a window = its error ratio / (1 - objective/100); 1.0 spends the budget
    exactly over the SLO period, and a window without requests burns 0. A policy fires only
    when both its long and its short window burn above its factor; the short window makes the
    alert stop soon after the problem does. The default factors assume a 30-day period:
    14.4x over 1 h spends 2% of the budget, 6x over 6 h spends 5%.

Window membership
    A rollup counts toward the window [ws, now) when it has closed by `now` (end <= now) and
    ends after the window starts (end > ws), so a rollup straddling ws counts whole. `now` is
    the caller's event time or watermark, never the wall clock.
"""

from sla.budget import (
    DEFAULT_BURN_RATE_POLICIES,
    BurnRateAlert,
    BurnRatePolicy,
    ErrorBudget,
    burn_rates,
    error_budget,
)
from sla.common import SLAConfigError
from sla.config import SLAConfig, SLAThreshold
from sla.evaluate import MetricResult, SLAReport, Violation, evaluate, status_for
from sla.windows import SLAInputs, summarize_windows, uptime_pct, whole_service_rollups

__all__ = [
    "DEFAULT_BURN_RATE_POLICIES",
    "BurnRateAlert",
    "BurnRatePolicy",
    "ErrorBudget",
    "MetricResult",
    "SLAConfig",
    "SLAConfigError",
    "SLAInputs",
    "SLAReport",
    "SLAThreshold",
    "Violation",
    "burn_rates",
    "error_budget",
    "evaluate",
    "status_for",
    "summarize_windows",
    "uptime_pct",
    "whole_service_rollups",
]
