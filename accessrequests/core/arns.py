"""How Gatehouse reads an ARN, in one place: the intake, the policy builder, the forms, the API and the AWS adapters
all accept the same partitions, regions and IAM names (pure Python: no Django, no boto3).

An ARN is ``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE``. The partition is one AWS operates: the commercial
``aws``, China ``aws-cn``, GovCloud ``aws-us-gov``, the European Sovereign Cloud ``aws-eusc`` and the isolated
``aws-iso*`` regions. A new partition is added here, and everywhere an ARN is read follows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-eusc", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")
# Longest first, so "aws-cn" is never read as "aws" followed by junk.
PARTITION = "(?:" + "|".join(re.escape(p) for p in sorted(PARTITIONS, key=len, reverse=True)) + ")"
# us-east-1, cn-northwest-1, us-gov-west-1, eusc-de-east-1, us-isob-east-1.
REGION = r"[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}"
ACCOUNT = r"\d{12}"
# IAM user, role, group and policy names (and each segment of their paths).
IAM_NAME = r"[A-Za-z0-9_+=,.@-]{1,128}"
_IAM_PATH_AND_NAME = rf"(?:{IAM_NAME}/){{0,50}}{IAM_NAME}"

_ARN = re.compile(
    rf"arn:(?P<partition>{PARTITION}):(?P<service>[a-z0-9-]{{1,64}}):(?P<region>{REGION}|):"
    r"(?P<account>\d{12}|aws|):(?P<resource>[^\s]{1,2048})"
)
_IAM_RESOURCE = re.compile(rf"(?P<kind>user|role|group|policy)/(?P<path_and_name>{_IAM_PATH_AND_NAME})")

# Patterns for forms and serializers (anchored with ^...$ by the caller's field).
IAM_ROLE_ARN = rf"arn:{PARTITION}:iam::{ACCOUNT}:role/{_IAM_PATH_AND_NAME}"
IAM_ROLE_OR_USER_ARN = rf"arn:{PARTITION}:iam::{ACCOUNT}:(?:role|user)/{_IAM_PATH_AND_NAME}"
_ROLE_OR_USER = re.compile(IAM_ROLE_OR_USER_ARN)
_ROLE = re.compile(IAM_ROLE_ARN)


@dataclass(frozen=True)
class Arn:
    """The fields of one ARN. ``account`` is "" for global resources and "aws" for AWS managed policies."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"

    @property
    def iam_kind(self) -> str | None:
        """``user``, ``role``, ``group``, ``policy`` or ``root`` for an IAM ARN of one of those; else None."""
        if self.service != "iam" or self.region:
            return None
        if self.resource == "root":
            return "root"
        match = _IAM_RESOURCE.fullmatch(self.resource)
        return match["kind"] if match else None

    @property
    def name(self) -> str:
        """The last segment of the resource: an IAM name without its path, a pipeline's name, ..."""
        return self.resource.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def parse(text: str | None) -> Arn | None:
    """The fields of ``text`` if it is an ARN of a partition AWS operates; None otherwise."""
    if not isinstance(text, str):
        return None
    match = _ARN.fullmatch(text)
    if match is None:
        return None
    return Arn(match["partition"], match["service"], match["region"], match["account"], match["resource"])


def account_of(text: str | None) -> str:
    """The 12-digit account id of an ARN, or "" when ``text`` is not an ARN or names no account."""
    arn = parse(text)
    return arn.account if arn is not None and re.fullmatch(ACCOUNT, arn.account) else ""


def is_role_arn(text: str | None) -> bool:
    """An IAM role ARN (with or without a path), in any partition."""
    return isinstance(text, str) and _ROLE.fullmatch(text) is not None


def is_role_or_user_arn(text: str | None) -> bool:
    """An IAM role or user ARN (with or without a path), in any partition."""
    return isinstance(text, str) and _ROLE_OR_USER.fullmatch(text) is not None


def iam_arn(*, partition: str, account: str, kind: str, name: str) -> str:
    """``arn:PARTITION:iam::ACCOUNT:KIND/NAME`` (``name`` may carry a path: ``service-role/X``)."""
    return f"arn:{partition}:iam::{account}:{kind}/{name.strip('/')}"
