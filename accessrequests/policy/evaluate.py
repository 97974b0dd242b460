"""An IAM policy evaluator that judges resources and conditions: Gatehouse confirms with it that AWS refuses
what it revoked (``provisioning/sessions.py``), and the deployment tests judge its blast radius with it.

moto's own evaluator (``moto.iam.access_control``) judges most calls against ``Resource: "*"`` and ignores
every condition operator but StringEquals on ``sts:ExternalId``: a statement scoped to real ARNs never matches
there, and a conditional Deny denies always. This module follows AWS's documented evaluation logic for one
request within an organization, as far as Gatehouse's policies and the deployment templates need it:

- an explicit Deny in any policy that applies wins;
- otherwise the identity policies must allow (or, in the resource's own account, the resource policy), the
  permissions boundary must allow too when the principal has one, and for ``sts:AssumeRole`` the role's
  trust policy must allow the caller;
- an action authorized against several resources (``sso:CreateAccountAssignment``: the instance, the
  permission set and the account) needs every one of them allowed.

Conditions: the String*, Arn*, Date* and Bool operators (``${*}``, ``${?}`` and ``${$}`` stand for the
characters themselves in StringLike patterns, as in IAM), the ``IfExists`` suffix and the ``ForAllValues:`` /
``ForAnyValue:`` set prefixes, with AWS's rules for a key the request does not carry (a positive operator is
false, a negated one is true, ``IfExists`` and ``ForAllValues`` are true). Keys compare case-insensitively,
values case-sensitively; actions match case-insensitively, ARNs segment by segment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Document = Mapping[str, Any]


@dataclass(frozen=True)
class Request:
    """One authorization: an action against resources, by a principal, with the request's condition keys."""

    action: str
    resources: tuple[str, ...] = ("*",)
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # The ARNs a Principal element may name for the caller: its session, its role or user, its account root.
    principals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Sids (or statement indexes) of the explicit Deny statements that matched, and why it was not allowed.
    denied_by: tuple[str, ...] = ()
    reason: str = ""


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# IAM's escapes for the characters a StringLike pattern would otherwise read as wildcards.
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}
_PATTERN_PARTS = re.compile(r"\$\{[*?$]\}|.", re.DOTALL)


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(
        re.escape(_ESCAPES[part]) if part in _ESCAPES
        else ".*" if part == "*" else "." if part == "?" else re.escape(part)
        for part in _PATTERN_PARTS.findall(pattern)
    )  # fmt: skip
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def like(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """StringLike: ``*`` any run of characters, ``?`` one character."""
    return bool(_wildcard(pattern, ignore_case=ignore_case).match(value))


def arn_like(pattern: str, value: str) -> bool:
    """ArnLike and Resource matching: the six colon-separated parts one by one (a wildcard stays in its part;
    the last part, the resource, may itself contain colons)."""
    if pattern == "*":
        return True
    wanted, actual = pattern.split(":", 5), value.split(":", 5)
    if len(wanted) != 6 or len(actual) != 6:
        return like(pattern, value)
    return all(like(w, a) for w, a in zip(wanted, actual, strict=True))


def _bool(pattern: str, value: str) -> bool:
    return pattern.lower() == value.lower()


def parse_date(value: str) -> datetime:
    """An IAM date: ISO 8601 (``2024-05-07T23:47:00Z``, with or without seconds, fractions or an offset) or
    seconds since the epoch, as AWS accepts both."""
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dates(compare: Any) -> Any:
    # The policy's date is the pattern, the request's the value: "DateLessThan": {key: T} holds when value < T.
    return lambda pattern, value: compare(parse_date(value), parse_date(pattern))


_OPERATORS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (like, False),
    "StringNotLike": (like, True),
    "ArnEquals": (lambda p, v: p == v, False),
    "ArnNotEquals": (lambda p, v: p == v, True),
    "ArnLike": (arn_like, False),
    "ArnNotLike": (arn_like, True),
    "Bool": (_bool, False),
    "DateEquals": (_dates(lambda v, p: v == p), False),
    "DateNotEquals": (_dates(lambda v, p: v == p), True),
    "DateLessThan": (_dates(lambda v, p: v < p), False),
    "DateLessThanEquals": (_dates(lambda v, p: v <= p), False),
    "DateGreaterThan": (_dates(lambda v, p: v > p), False),
    "DateGreaterThanEquals": (_dates(lambda v, p: v >= p), False),
}


class UnsupportedCondition(ValueError):
    """A condition operator this evaluator does not know: never guess, fail the test instead."""


def condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, Sequence[str]]) -> bool:
    """Does one ``operator: {key: wanted}`` pair hold for the request's context?"""
    set_operator = ""
    if ":" in operator:
        set_operator, operator = operator.split(":", 1)
        if set_operator not in {"ForAllValues", "ForAnyValue"}:
            raise UnsupportedCondition(f"{set_operator}:{operator}")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise UnsupportedCondition(operator)
    compare, negated = _OPERATORS[base]
    values = {k.lower(): v for k, v in context.items()}.get(key.lower())
    patterns = [str(p) for p in _as_list(wanted)]
    if values is None:  # the request does not carry the key
        if if_exists or set_operator == "ForAllValues":
            return True
        if set_operator == "ForAnyValue":
            return False
        return negated
    values = [str(v) for v in _as_list(values)]

    def matches(value: str) -> bool:
        return any(compare(pattern, value) for pattern in patterns)

    if set_operator == "ForAllValues":
        return all(matches(v) != negated for v in values)
    if set_operator == "ForAnyValue":
        return any(matches(v) != negated for v in values)
    # A single-valued key: a positive operator holds when some value matches, a negated one when none does.
    return not any(matches(v) for v in values) if negated else any(matches(v) for v in values)


def conditions_hold(
    conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, Sequence[str]]
) -> bool:
    return all(
        condition_holds(operator, key, wanted, context)
        for operator, pairs in conditions.items()
        for key, wanted in pairs.items()
    )


def _action_matches(statement: Document, action: str) -> bool:
    if "NotAction" in statement:
        return not any(like(p, action, ignore_case=True) for p in _as_list(statement["NotAction"]))
    return any(like(p, action, ignore_case=True) for p in _as_list(statement.get("Action")))


def _resource_matches(statement: Document, resource: str) -> bool:
    if "NotResource" in statement:
        return not any(arn_like(p, resource) for p in _as_list(statement["NotResource"]))
    if "Resource" not in statement:
        return True  # a trust policy: the resource is the role itself
    return any(arn_like(p, resource) for p in _as_list(statement["Resource"]))


def _principal_matches(statement: Document, principals: Iterable[str]) -> bool:
    if "Principal" not in statement:
        return True  # identity policies name no principal
    named = statement["Principal"]
    if named == "*":
        return True
    aws = [str(p) for p in _as_list(named.get("AWS") if isinstance(named, Mapping) else None)]
    return "*" in aws or any(p in aws for p in principals)


def statement_applies(statement: Document, request: Request, resource: str) -> bool:
    return (
        _action_matches(statement, request.action)
        and _resource_matches(statement, resource)
        and _principal_matches(statement, request.principals)
        and conditions_hold(statement.get("Condition", {}), request.context)
    )


def statements(document: Document | str) -> list[Document]:
    loaded: Document = json.loads(document) if isinstance(document, str) else document
    return [s for s in _as_list(loaded.get("Statement")) if isinstance(s, Mapping)]


def _name(statement: Document, index: int) -> str:
    return str(statement.get("Sid") or f"#{index}")


def _verdict(documents: Iterable[Document | str], request: Request, resource: str) -> tuple[bool, list[str]]:
    """(some Allow applies, the Denies that apply) over a set of policies."""
    allowed, denies = False, []
    for document in documents:
        for index, statement in enumerate(statements(document)):
            if not statement_applies(statement, request, resource):
                continue
            if statement.get("Effect") == "Deny":
                denies.append(_name(statement, index))
            elif statement.get("Effect") == "Allow":
                allowed = True
    return allowed, denies


def decide(
    request: Request,
    *,
    identity: Sequence[Document | str],
    boundary: Document | str | None = None,
    resource_policy: Document | str | None = None,
    trust: Document | str | None = None,
) -> Decision:
    """AWS's answer to ``request`` by a principal with these policies (see the module docstring)."""
    for resource in request.resources:
        allowed, denies = _verdict(identity, request, resource)
        in_boundary, boundary_denies = _verdict([boundary] if boundary else [], request, resource)
        by_resource, resource_denies = _verdict(
            [resource_policy] if resource_policy else [], request, resource
        )
        denied = denies + boundary_denies + resource_denies
        if denied:
            return Decision(False, tuple(denied), f"explicit deny of {request.action} on {resource}")
        if not (allowed or by_resource):
            return Decision(False, (), f"no policy allows {request.action} on {resource}")
        if boundary is not None and not in_boundary and not by_resource:
            return Decision(
                False, (), f"the permissions boundary does not allow {request.action} on {resource}"
            )
        if trust is not None:
            trusted, trust_denies = _verdict([trust], request, resource)
            if trust_denies or not trusted:
                return Decision(
                    False, tuple(trust_denies), f"the trust policy of {resource} does not allow it"
                )
    return Decision(True)


def without_statement(document: Document | str, sid: str) -> dict[str, Any]:
    """A copy of ``document`` without the statement ``sid`` (for "remove one statement, see what breaks")."""
    loaded = json.loads(document) if isinstance(document, str) else dict(document)
    return {**loaded, "Statement": [s for s in statements(loaded) if s.get("Sid") != sid]}
