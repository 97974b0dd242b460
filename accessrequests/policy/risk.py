"""How much a permission set can do: "standard" or "privileged", from its policies. Pure functions.

An Identity Center assignment hands over whatever the permission set allows, which Gatehouse did not write and
cannot narrow. So every set is classed at catalog sync, and a privileged one is routed only by an approval rule
that opts in to privileged sets (``ApprovalRule.allow_privileged_permission_sets``) and is shown to approvers
in red. Privileged means any of:

- an AWS managed policy that is admin-equivalent or hands out identity/organization control;
- an Allow on the action ``*`` or on a whole service (``svc:*``) that controls identity, keys or the
  organization, or an Allow through ``NotAction`` (everything but a list);
- IAM, STS or Organizations write actions (creating users, attaching policies, passing roles to anything);
- a customer managed policy: its document lives in each account and cannot be read from Identity Center, so
  it is treated as privileged until an admin says otherwise by editing the rule, not the class;
- an inline policy that cannot be parsed.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

STANDARD = "standard"
PRIVILEGED = "privileged"

# AWS managed policies that give away the account (or its identities) whole.
PRIVILEGED_MANAGED_POLICIES = frozenset(
    {
        "AdministratorAccess",
        "AdministratorAccess-Amplify",
        "AdministratorAccess-AWSElasticBeanstalk",
        "PowerUserAccess",
        "IAMFullAccess",
        "SystemAdministrator",
        "AWSOrganizationsFullAccess",
        "AWSSSOMasterAccountAdministrator",
        "AWSSSOMemberAccountAdministrator",
        "AWSSSODirectoryAdministrator",
        "AWSIdentityCenterFullAccess",
        "AWSKeyManagementServicePowerUser",
        "SecurityAudit-ReadWrite",
    }
)
# Services whose whole wildcard hands out control over identities, keys or the organization.
SENSITIVE_SERVICES = frozenset(
    {"iam", "sts", "organizations", "sso", "sso-directory", "identitystore", "kms", "account", "ram"}
)
# Write actions of those services that turn into more access (escalation paths), by prefix.
ESCALATION_ACTIONS = (
    "iam:create",
    "iam:put",
    "iam:attach",
    "iam:update",
    "iam:add",
    "iam:passrole",
    "iam:setdefaultpolicyversion",
    "iam:delete",
    "iam:detach",
    "sts:assumerole",
    "organizations:",
    "sso:create",
    "sso:put",
    "sso:attach",
    "sso:update",
    "identitystore:create",
    "identitystore:update",
)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def policy_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _document(text: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(text, Mapping):
        return text
    stripped = text.strip()
    if not stripped.startswith("{"):
        stripped = urllib.parse.unquote(stripped)
    loaded = json.loads(stripped)
    if not isinstance(loaded, dict):
        raise ValueError("a policy document is a JSON object")
    return loaded


def document_reasons(document: str | Mapping[str, Any]) -> list[str]:
    """Why one policy document is privileged (empty when it is not)."""
    try:
        parsed = _document(document)
    except ValueError:
        return ["its inline policy cannot be read as JSON"]
    reasons: list[str] = []
    for statement in _as_list(parsed.get("Statement")):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            reasons.append("it allows everything but a list of actions (NotAction)")
        for raw in _as_list(statement.get("Action")):
            action = str(raw).lower()
            service, _, name = action.partition(":")
            if action in ("*", "*:*"):
                reasons.append("it allows every action (*)")
            elif name == "*" and service in SENSITIVE_SERVICES:
                reasons.append(f"it allows every {service} action ({raw})")
            elif action.startswith(ESCALATION_ACTIONS) or (
                "*" in name and service in SENSITIVE_SERVICES and not name.startswith(("get", "list"))
            ):
                reasons.append(f"it allows {raw}, which can grant more access")
    return list(dict.fromkeys(reasons))


def permission_set_risk(
    *,
    managed_policy_arns: Iterable[str] = (),
    customer_managed_policies: Iterable[str] = (),
    inline_policy: str | None = None,
) -> tuple[str, list[str]]:
    """The risk class of a permission set and the reasons for it."""
    reasons = [
        f"AWS managed policy {policy_name(arn)} is admin-equivalent"
        for arn in managed_policy_arns
        if policy_name(arn) in PRIVILEGED_MANAGED_POLICIES
    ]
    reasons += [
        f"customer managed policy {name} cannot be read from Identity Center"
        for name in customer_managed_policies
    ]
    if inline_policy:
        reasons += document_reasons(inline_policy)
    return (PRIVILEGED if reasons else STANDARD), reasons
