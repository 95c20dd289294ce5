"""The one error type for everything the proxy rejects or relays as a failure.

Each protocol module renders a ProxyError in its own envelope and parses its provider's error
bodies into one, so that an upstream error keeps its status and message on the way to a client of
another protocol.
"""

from __future__ import annotations

from typing import Any, Literal

ErrorCode = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "billing",
    "too_large",
    "rate_limited",
    "overloaded",
    "upstream_error",
    "upstream_unreachable",
    "timeout",
    "internal",
    # The proxy's own access control (README "Access"): a missing or wrong proxy key, a key not
    # allowed the model it asked for, a key over one of its usage limits.
    "unauthenticated",
    "forbidden",
    "limit_reached",
]

# code -> (default HTTP status, does retrying help?)
CODES: dict[str, tuple[int, bool]] = {
    "invalid_request": (400, False),
    "authentication": (401, False),
    "billing": (402, False),
    "permission": (403, False),
    "not_found": (404, False),
    "too_large": (413, False),
    "rate_limited": (429, True),
    "internal": (500, True),
    "upstream_error": (502, True),
    "upstream_unreachable": (502, True),
    "overloaded": (503, True),
    "timeout": (504, True),
    "unauthenticated": (401, False),
    "forbidden": (403, False),
    "limit_reached": (429, False),  # retrying before Retry-After cannot help
}

STATUS_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "authentication",
    402: "billing",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    502: "upstream_error",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}


def code_for_status(status: int) -> str:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    return "upstream_error" if status >= 500 else "invalid_request"


class ProxyError(Exception):
    """A failure with a canonical ``code``, an HTTP ``status``, a client-safe ``message`` and
    whether retrying can help. ``provider_type`` keeps the provider's own error type string when the
    error came from upstream, so a same-protocol client sees it unchanged."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        provider_type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        default_status, default_retryable = CODES.get(code, (500, False))
        self.code = code
        self.message = message
        self.status = status or default_status
        self.retryable = default_retryable if retryable is None else retryable
        self.provider_type = provider_type
        self.param = param
        self.retry_after = retry_after

    @classmethod
    def from_status(cls, status: int, message: str, **kwargs: Any) -> ProxyError:
        return cls(code_for_status(status), message, status=status, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "retryable": self.retryable,
            "provider_type": self.provider_type,
            "param": self.param,
            "retry_after": self.retry_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyError:
        return cls(
            str(data.get("code") or "internal"),
            str(data.get("message") or "unknown error"),
            status=data.get("status"),
            retryable=data.get("retryable"),
            provider_type=data.get("provider_type"),
            param=data.get("param"),
            retry_after=data.get("retry_after"),
        )

    def __repr__(self) -> str:
        return f"ProxyError({self.code!r}, {self.message!r}, status={self.status})"
