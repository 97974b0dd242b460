"""How the provisioning engine tells a passing AWS failure (retry it) from a lasting one (show it to people).

The services above ``accessrequests/aws/`` never import botocore; they ask these two functions instead.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from .client import error_details

# Codes AWS uses for "slow down" or "not now"; ConflictException is Identity Center's "a previous change to
# this permission set or assignment is still propagating".
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceFailure",
        "InternalFailure",
        "InternalError",
        "InternalServerException",
        "ConflictException",
        "ConcurrentModification",
        "ConcurrentModificationException",
    }
)
_NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


class AwsOperationError(Exception):
    """A failure our own AWS code detected (an assignment that FAILED, a write that did not read back)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def is_aws_error(exc: BaseException) -> bool:
    """Did the failure come from AWS or from our handling of its answers (rather than from a bug)? An answer
    botocore cannot parse (an HTML error page from a proxy, or an endpoint that does not implement the call, as moto
    does for some IAM calls) counts: it came from the endpoint."""
    return isinstance(exc, BotoCoreError | ClientError | AwsOperationError | ResponseParserError)


def is_transient(exc: BaseException) -> bool:
    """Will the same call probably succeed if tried again later (throttling, 5xx, network, conflicts)?"""
    if isinstance(exc, AwsOperationError):
        return exc.transient
    if isinstance(exc, (*_NETWORK_ERRORS, ResponseParserError)):  # botocore: "Further retries may succeed"
        return True
    if isinstance(exc, ClientError):
        code, _ = error_details(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_CODES or int(status) >= 500
    return False


def describe(exc: BaseException) -> str:
    """One line a requester or an admin can act on, without stack traces or credentials."""
    if isinstance(exc, ClientError):
        code, message = error_details(exc)
        operation = getattr(exc, "operation_name", "") or "the AWS call"
        return f"AWS refused {operation}: {code}: {message}".strip()
    if isinstance(exc, _NETWORK_ERRORS):
        return f"AWS could not be reached: {exc}"
    if isinstance(exc, ResponseParserError):
        what = str(exc).split(". Further retries", 1)[0].splitlines()[0][:200]
        return (
            f"the answer from AWS could not be read ({what}); an endpoint set by AWS_ENDPOINT_URL may not "
            "implement this call"
        )
    if isinstance(exc, BotoCoreError):
        return f"AWS client error: {exc}"
    return str(exc)
