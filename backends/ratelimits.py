"""How long a provider asks us to wait, from its headers or its error body."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from translators.errors import ProxyError

# OpenAI's reset headers are durations such as "1s", "6m0s", "250ms".
DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)
RESET_HEADERS = (
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)


def retry_after(headers: Mapping[str, str], error: ProxyError | None = None) -> float | None:
    """Seconds to wait: retry-after-ms, retry-after (seconds or HTTP date), the providers' reset
    headers (the latest one), then a hint the error body carried (Gemini's RetryInfo)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if (value := lowered.get("retry-after-ms")) and (seconds := _number(value)) is not None:
        return seconds / 1000
    if value := lowered.get("retry-after"):
        if (seconds := _number(value)) is not None:
            return seconds
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    resets = [s for name in RESET_HEADERS if (v := lowered.get(name)) and (s := _reset(v)) is not None]
    if resets:
        return max(resets)
    return error.retry_after if error else None


def _number(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _reset(value: str) -> float | None:
    if match := DURATION.match(value.strip()):
        if any(match.groups()):
            h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
            return h * 3600 + m * 60 + s + ms / 1000
    try:  # Anthropic: an RFC 3339 time
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - time.time())
    except ValueError:
        return None
