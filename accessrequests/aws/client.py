"""One factory for every boto3 client Gatehouse makes.

Everything that talks to AWS goes through :func:`client`, so the endpoint (a moto server in the demo and the
tests, real AWS in production), the retry policy and the cross-account hop are decided in one place:

- ``AWS_ENDPOINT_URL`` (Django setting, else the environment): empty or unset means real AWS.
- botocore's ``adaptive`` retry mode: standard retries plus a client-side token bucket that slows down after
  ``Throttling`` / "Rate exceeded" answers, which IAM and Identity Center give out generously.
- sso-admin and identitystore clients are put under the Identity Center rate governor (``governor.py``),
  which every worker shares: botocore's retries stay, the governor paces the calls in the first place.
- ``role_arn``: the per-account provisioning role, assumed through STS with the hub's own credentials. The
  temporary credentials are cached per (endpoint, role) until shortly before they expire.

Multi-account against moto: moto's STS ``AssumeRole`` accepts any role ARN (the role need not even exist) and
mints an access key that it files under the account named in that ARN; every later call signed with that key
is served from that account's backends. So ``client("iam", role_arn="arn:aws:iam::<other>:role/X")`` really
does reach a second, separate account on the same moto server — the demo world uses it for its "production"
account, and the code path is the same one production takes.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from accessrequests.core import arns

from .config import in_quick_reads, setting
from .governor import govern

SESSION_NAME = "gatehouse-provisioner"
DEFAULT_REGION = "us-east-1"
# Used when only ``account_id`` is given: the role Gatehouse assumes in each account it provisions.
DEFAULT_PROVISIONING_ROLE_NAME = "GatehouseProvisioner"
# Identity Center's services: paced by the shared governor, and reached through the Identity Center role.
_GOVERNED = frozenset({"sso-admin", "identitystore"})

# Ten retries (botocore adds the first attempt) ride out an IAM or Identity Center throttling burst — adaptive
# mode backs off between them — without keeping a Celery task busy for minutes.
MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30

# Assumed-role credentials live one hour by default; refresh them this long before AWS would refuse them,
# so a client handed out just before expiry still has time to finish its work.
CREDENTIALS_REFRESH_MARGIN = 300
ASSUME_ROLE_DURATION = 3600


def endpoint_url() -> str | None:
    """The AWS endpoint to talk to, or None for real AWS (empty values count as unset)."""
    return setting("AWS_ENDPOINT_URL") or None


def default_region() -> str:
    return setting("AWS_DEFAULT_REGION") or DEFAULT_REGION


def botocore_config(*, max_attempts: int | None = None) -> Config:
    """Adaptive retries and bounded timeouts; ``AWS_MAX_ATTEMPTS`` overrides the attempt count. Inside
    ``quick_reads()``: one attempt, short timeouts."""
    if in_quick_reads():
        return Config(
            retries={"mode": "standard", "max_attempts": 1},
            connect_timeout=2,
            read_timeout=5,
            user_agent_extra="gatehouse",
        )
    if max_attempts is None:
        max_attempts = int(setting("AWS_MAX_ATTEMPTS") or MAX_ATTEMPTS)
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        user_agent_extra="gatehouse",
    )


@dataclass(frozen=True)
class _Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float  # time.time() seconds


_credentials_cache: dict[tuple[str | None, str], _Credentials] = {}
_credentials_lock = threading.Lock()
_role_locks: dict[tuple[str | None, str], threading.Lock] = {}
_own_account: dict[str | None, str] = {}


def clear_credentials_cache() -> None:
    """Forget assumed-role credentials, the hub's account id and the hub's own credentials.

    Tests call this after resetting moto or changing the credentials in the environment.
    """
    global _session
    with _credentials_lock:
        _credentials_cache.clear()
        _role_locks.clear()
        _own_account.clear()
    with _session_lock:
        _session = None


def account_of(arn: str) -> str:
    """The account id in an ARN (``arn:aws:iam::123456789012:role/X`` → ``123456789012``)."""
    account = arns.account_of(arn)
    if not account:
        raise ValueError(f"not an ARN that names an account: {arn!r}")
    return account


# A boto3 Session is not thread-safe while it builds clients (credential resolution and the loader race), so
# Celery threads and gunicorn threads build them one at a time; the clients themselves are thread-safe.
_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _new_client(service: str, **kwargs: Any) -> Any:
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(service, **kwargs)  # type: ignore[call-overload]


def _hub_client(service: str, *, config: Config | None = None) -> Any:
    """A client with the hub's own credentials (environment, instance profile, ...)."""
    return _new_client(
        service, region_name=default_region(), endpoint_url=endpoint_url(), config=config or botocore_config()
    )


def _assume(role_arn: str) -> _Credentials:
    sts = _hub_client("sts")
    extra: dict[str, str] = {}
    # The deployed roles (deploy/cloudformation) trust the hub only with this external id.
    external_id = setting("AWS_PROVISIONING_EXTERNAL_ID")
    if external_id:
        extra["ExternalId"] = external_id
    answer = sts.assume_role(
        RoleArn=role_arn, RoleSessionName=SESSION_NAME, DurationSeconds=ASSUME_ROLE_DURATION, **extra
    )
    creds = answer["Credentials"]
    return _Credentials(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
        expires_at=creds["Expiration"].timestamp(),
    )


def _cached_credentials(key: tuple[str | None, str]) -> _Credentials | None:
    with _credentials_lock:
        cached = _credentials_cache.get(key)
    if cached is not None and cached.expires_at - time.time() > CREDENTIALS_REFRESH_MARGIN:
        return cached
    return None


def assumed_credentials(role_arn: str) -> _Credentials:
    """Credentials for ``role_arn``, from the cache while they have more than the margin left."""
    key = (endpoint_url(), role_arn)
    cached = _cached_credentials(key)
    if cached is not None:
        return cached
    # One lock per role, held across the STS call: two threads needing the same role make one AssumeRole call,
    # not two, while threads assuming roles in different accounts (the catalog sync's listings) do not queue.
    with _credentials_lock:
        role_lock = _role_locks.setdefault(key, threading.Lock())
    with role_lock:
        cached = _cached_credentials(key)
        if cached is not None:
            return cached
        fresh = _assume(role_arn)
        with _credentials_lock:
            _credentials_cache[key] = fresh
        return fresh


def assume_fresh(role_arn: str) -> None:
    """Assume ``role_arn`` now, whatever the cache holds: proof that the role can be assumed today (the doctor).
    The credentials then serve the next clients of that role."""
    fresh = _assume(role_arn)
    with _credentials_lock:
        _credentials_cache[(endpoint_url(), role_arn)] = fresh


def provisioning_role_name() -> str:
    """The role Gatehouse assumes in each member account (setting ``AWS_PROVISIONING_ROLE_NAME``)."""
    return setting("AWS_PROVISIONING_ROLE_NAME") or DEFAULT_PROVISIONING_ROLE_NAME


def provisioning_role_arn(account_id: str) -> str:
    """The conventional provisioning role in ``account_id`` (setting ``AWS_PROVISIONING_ROLE_NAME``)."""
    return f"arn:aws:iam::{account_id}:role/{provisioning_role_name()}"


def role_to_assume(service: str, *, role_arn: str | None, account_id: str | None) -> str | None:
    """The role a client for ``service`` is made with (None: the hub's own credentials).

    An explicit ``role_arn`` wins. Identity Center (sso-admin, identitystore) lives in the management or
    delegated administrator account: ``GATEHOUSE_IDENTITY_CENTER_ROLE_ARN`` when set. ``account_id`` alone:
    the conventional provisioning role there, unless it is the hub's own account.
    """
    if role_arn is not None:
        return role_arn
    if service in _GOVERNED and account_id is None:
        return setting("GATEHOUSE_IDENTITY_CENTER_ROLE_ARN") or None
    if account_id is not None and account_id != own_account_id():
        return provisioning_role_arn(account_id)
    return None


def own_account_id() -> str:
    """The account of the hub's own credentials (cached per endpoint)."""
    url = endpoint_url()
    if url not in _own_account:
        sts = _hub_client("sts")
        _own_account[url] = sts.get_caller_identity()["Account"]
    return _own_account[url]


def client(
    service: str,
    *,
    region: str | None = None,
    role_arn: str | None = None,
    account_id: str | None = None,
) -> Any:
    """A boto3 client for ``service``, configured the Gatehouse way.

    ``role_arn``: assume this role first (cached credentials). ``account_id`` alone: use the hub's own
    credentials when it is the hub's account, else assume the conventional provisioning role there. Both:
    the role must live in that account (a mismatch is a catalog error worth failing loudly on). Identity
    Center clients without either go through the Identity Center role (:func:`role_to_assume`).
    """
    if role_arn and account_id and account_of(role_arn) != account_id:
        raise ValueError(f"role {role_arn} is not in account {account_id}")
    role_arn = role_to_assume(service, role_arn=role_arn, account_id=account_id)

    kwargs: dict[str, Any] = {
        "region_name": region or default_region(),
        "endpoint_url": endpoint_url(),
        "config": botocore_config(),
    }
    if role_arn:
        creds = assumed_credentials(role_arn)
        kwargs |= {
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
            "aws_session_token": creds.session_token,
        }
    made = _new_client(service, **kwargs)
    if service in _GOVERNED:
        # Identity Center's limits are shared by every worker on every machine: its clients pace themselves
        # through the shared governor.

        govern(made)
    return made


@dataclass(frozen=True)
class Ping:
    """Outcome of :func:`ping` for the health check."""

    ok: bool
    endpoint: str | None
    account_id: str | None = None
    error: str = ""


def ping(*, timeout: float = 3.0) -> Ping:
    """Is AWS (or the moto server) reachable with our credentials? One GetCallerIdentity, no retries.

    GetCallerIdentity needs no permission, so it works for any valid credentials and proves both the network
    path and the credentials, while costing nothing.
    """
    url = endpoint_url()
    config = Config(
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=timeout,
        read_timeout=timeout,
        user_agent_extra="gatehouse",
    )
    try:
        sts = _hub_client("sts", config=config)
        account = sts.get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as exc:
        return Ping(ok=False, endpoint=url, error=f"{type(exc).__name__}: {exc}")
    return Ping(ok=True, endpoint=url, account_id=account)


# --- errors ---

_XML_FIELD = re.compile(r"<(Code|Message)>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</\1>", re.DOTALL)


def error_details(exc: ClientError) -> tuple[str, str]:
    """(code, message) of an AWS error, also when moto answers a JSON-protocol client in XML.

    moto's IAM authorization (after ``/moto-api/reset-auth``) refuses CodePipeline, SSO Admin and Identity
    Store calls with an XML ``AccessDenied`` body and HTTP 403; botocore cannot parse that as JSON, so it
    reports the code ``"403"`` and the raw XML as the message. Real AWS answers ``AccessDeniedException``.
    """
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if message.lstrip().startswith("<"):
        fields = dict(_XML_FIELD.findall(message))
        code, message = fields.get("Code", code), fields.get("Message", message).strip()
    return code, message


def is_access_denied(exc: BaseException) -> bool:
    """Did AWS refuse the call for lack of permission (any service, any protocol, moto included)?"""
    if not isinstance(exc, ClientError):
        return False
    code, _ = error_details(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"} or (
        code == "403" and status == 403
    )
