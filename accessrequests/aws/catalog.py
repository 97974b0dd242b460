"""Read-only views of the AWS world for the periodic catalog sync.

Every function pages through the whole listing and returns frozen dataclasses, so the sync task never sees a
boto3 response shape. Nothing here changes AWS. Functions that read inside an account accept ``role_arn``
(the account's provisioning role) and ``account_id`` and get their client from :func:`client`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from .client import account_of, client

logger = logging.getLogger(__name__)

CODEPIPELINE_SERVICE = "codepipeline.amazonaws.com"
SENSITIVE_TAG = "gatehouse:sensitive"


@dataclass(frozen=True)
class Account:
    """An AWS account from Organizations (or the caller's own account when Organizations is not in use)."""

    id: str
    name: str
    email: str = ""
    status: str = "ACTIVE"
    arn: str = ""


@dataclass(frozen=True)
class PipelineAction:
    name: str
    category: str  # Source, Build, Test, Deploy, Approval, Invoke, Compute


@dataclass(frozen=True)
class PipelineStage:
    name: str
    actions: tuple[PipelineAction, ...]


@dataclass(frozen=True)
class Pipeline:
    """A CodePipeline pipeline; ``stages`` lets requests name a stage or an action (PutApprovalResult)."""

    name: str
    region: str
    account_id: str
    arn: str
    role_arn: str
    stages: tuple[PipelineStage, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    listed_as: str = ""  # what ListPipelines said of it when it was read (pipeline_listed_as)


@dataclass(frozen=True)
class Role:
    """An IAM role; only roles that trust codepipeline and are not sensitive may be passed through a grant."""

    arn: str
    name: str
    path: str
    account_id: str
    trusts_codepipeline: bool
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def sensitive(self) -> bool:
        return self.tags.get(SENSITIVE_TAG, "").strip().lower() == "true"


@dataclass(frozen=True)
class IamIdentity:
    """An IAM user or group: a principal an inline policy can be attached to. A group lists its members' ARNs."""

    arn: str
    name: str
    path: str
    account_id: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityCenter:
    instance_arn: str
    identity_store_id: str


@dataclass(frozen=True)
class PermissionSet:
    """A permission set and what it grants: its AWS managed policies, customer managed policy references (their
    documents live in each account) and inline policy."""

    arn: str
    name: str
    description: str
    session_duration: str  # ISO 8601 duration, e.g. "PT1H"
    managed_policies: tuple[str, ...] = ()
    customer_managed_policies: tuple[str, ...] = ()
    inline_policy: str = ""


@dataclass(frozen=True)
class IdentityCenterUser:
    user_id: str
    user_name: str
    display_name: str
    email: str


@dataclass(frozen=True)
class IdentityCenterGroup:
    group_id: str
    display_name: str
    description: str
    member_ids: tuple[str, ...] = ()  # identity store user ids


_scope = threading.local()


@contextmanager
def one_client_each() -> Iterator[None]:
    """Within it, this thread's reads make each client once (per service, region, role and account) and use it
    again: making a boto3 client costs milliseconds of CPU, more than most calls here. The catalog sync wraps
    each account's listing in it; the clients go when it ends."""
    _scope.clients = {}
    try:
        yield
    finally:
        del _scope.clients


def _client(service: str, **where: Any) -> Any:
    made: dict[tuple[Any, ...], Any] | None = getattr(_scope, "clients", None)
    if made is None:
        return client(service, **where)
    key = (service, *sorted(where.items()))
    if key not in made:
        made[key] = client(service, **where)
    return made[key]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _pages(boto_client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    yield from boto_client.get_paginator(operation).paginate(**kwargs)


def _tags(pairs: Iterable[Mapping[str, str]], key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {pair[key]: pair[value] for pair in pairs}


# --- accounts ---


def list_accounts() -> list[Account]:
    """Accounts of the organization, or just the caller's own account.

    Organizations answers ``AWSOrganizationsNotInUseException`` when there is no organization and
    ``AccessDeniedException`` when the hub is a member account that is not a delegated administrator; either
    way the portal still manages the account it runs in.
    """
    try:
        accounts = [
            Account(
                id=item["Id"],
                name=item.get("Name", item["Id"]),
                email=item.get("Email", ""),
                status=item.get("Status", "ACTIVE"),
                arn=item.get("Arn", ""),
            )
            for page in _pages(client("organizations"), "list_accounts")
            for item in page["Accounts"]
        ]
    except ClientError as exc:
        if _error_code(exc) not in {"AWSOrganizationsNotInUseException", "AccessDeniedException"}:
            raise
        logger.info("organizations unavailable (%s); using the caller's own account", _error_code(exc))
        return [_own_account()]
    if not accounts:
        # An organization always lists its management account; moto answers an empty list instead of
        # AWSOrganizationsNotInUseException when there is no organization.
        return [_own_account()]
    return sorted(accounts, key=lambda account: account.id)


@dataclass(frozen=True)
class OrgUnit:
    """A root (``r-…``) or organizational unit (``ou-…``); ``parent_id`` is empty for a root."""

    id: str
    name: str
    parent_id: str = ""


@dataclass(frozen=True)
class OrgTree:
    """The Organization as the sync needs it: every unit, and every account with the unit it sits in.

    ``organization`` is False outside an organization (then ``accounts`` is the caller's own account alone and
    ``units`` is empty).
    """

    units: tuple[OrgUnit, ...]
    accounts: tuple[Account, ...]
    parent_of: Mapping[str, str]  # account id -> unit id
    organization: bool = True


def organization_tree() -> OrgTree:
    """Walk the Organization from its roots: ListRoots, then per unit ListOrganizationalUnitsForParent and
    ListAccountsForParent (paginated). One walk gives each account's unit, where ListParents would cost one
    call per account (3,000 calls at Organizations' one-request-a-second pace is most of an hour)."""
    organizations = client("organizations")
    try:
        roots = [
            OrgUnit(id=root["Id"], name=root.get("Name", "Root"))
            for page in _pages(organizations, "list_roots")
            for root in page.get("Roots", [])
        ]
    except ClientError as exc:
        if _error_code(exc) not in {"AWSOrganizationsNotInUseException", "AccessDeniedException"}:
            raise
        logger.info("organizations unavailable (%s); using the caller's own account", _error_code(exc))
        return OrgTree(units=(), accounts=(_own_account(),), parent_of={}, organization=False)
    units: list[OrgUnit] = []
    accounts: list[Account] = []
    parent_of: dict[str, str] = {}
    todo = list(roots)
    while todo:
        unit = todo.pop()
        units.append(unit)
        for page in _pages(organizations, "list_accounts_for_parent", ParentId=unit.id):
            for item in page.get("Accounts", []):
                accounts.append(
                    Account(
                        id=item["Id"],
                        name=item.get("Name", item["Id"]),
                        email=item.get("Email", ""),
                        status=item.get("Status", "ACTIVE"),
                        arn=item.get("Arn", ""),
                    )
                )
                parent_of[item["Id"]] = unit.id
        for page in _pages(organizations, "list_organizational_units_for_parent", ParentId=unit.id):
            for child in page.get("OrganizationalUnits", []):
                todo.append(OrgUnit(id=child["Id"], name=child.get("Name", child["Id"]), parent_id=unit.id))
    if not accounts:
        return OrgTree(units=(), accounts=(_own_account(),), parent_of={}, organization=False)
    return OrgTree(
        units=tuple(sorted(units, key=lambda u: u.id)),
        accounts=tuple(sorted(accounts, key=lambda a: a.id)),
        parent_of=parent_of,
    )


def account_tags(account_id: str) -> dict[str, str] | None:
    """The Organizations tags of one account; None when there is no organization to ask.

    Separate from the organization walk on purpose: tags cost one call per account, and Organizations allows
    about one request a second, so the sync asks only for the accounts it lists. Any other failure (no
    permission, throttling past the retries) raises: the account's listing then failed, and its tags (and the
    environment they give it) stay as last read.
    """
    try:
        return {
            key: value
            for page in _pages(_client("organizations"), "list_tags_for_resource", ResourceId=account_id)
            for key, value in _tags(page.get("Tags", [])).items()
        }
    except ClientError as exc:
        if _error_code(exc) != "AWSOrganizationsNotInUseException":
            raise
        return None


def _own_account() -> Account:
    identity = client("sts").get_caller_identity()
    account_id = identity["Account"]
    # The account alias is the closest thing to a name an account has outside Organizations.
    aliases = client("iam").list_account_aliases().get("AccountAliases", [])
    return Account(id=account_id, name=aliases[0] if aliases else account_id)


# --- pipelines ---


@dataclass(frozen=True)
class PipelineListing:
    """One region of one account: the pipelines read in full, and the names of those left unread because
    ``ListPipelines`` shows them as they were at their last reading (``known``)."""

    read: tuple[Pipeline, ...]
    unchanged: tuple[str, ...] = ()


def pipeline_listed_as(summary: Mapping[str, Any]) -> str:
    """What ``ListPipelines`` says of one pipeline's declaration: its version, creation and last update.

    UpdatePipeline raises the version and moves ``updated`` (a new role, stages or actions); a pipeline deleted and
    created again under the same name starts at version 1 with a new ``created``. Tagging changes none of them.
    Empty when the summary has no update time, so such a pipeline is always read.
    """
    if not summary.get("updated"):
        return ""
    text = f"{summary.get('version', '')}\0{summary.get('created', '')}\0{summary['updated']}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def list_pipelines(*, account_id: str, region: str, role_arn: str | None = None) -> list[Pipeline]:
    """Every pipeline of one account in one region, each read in full (see :func:`list_pipeline_changes`)."""
    return list(list_pipeline_changes(account_id=account_id, region=region, role_arn=role_arn).read)


def list_pipeline_changes(
    *,
    account_id: str,
    region: str,
    role_arn: str | None = None,
    known: Mapping[str, str] | None = None,
) -> PipelineListing:
    """The pipelines of one account in one region, reading in full only those that changed.

    ``ListPipelines`` returns names with their version and update time only, so a pipeline read in full costs a
    GetPipeline (ARN, roleArn, stages) and a ListTagsForResource. ``known`` maps a name to what the listing said of
    it when it was last read in full (:func:`pipeline_listed_as`); a pipeline the listing still shows that way is
    not read again and comes back by name in ``unchanged``.
    """
    known = known or {}
    codepipeline = _client("codepipeline", region=region, role_arn=role_arn, account_id=account_id)
    pipelines = []
    unchanged = []
    for page in _pages(codepipeline, "list_pipelines"):
        for summary in page["pipelines"]:
            listed_as = pipeline_listed_as(summary)
            if listed_as and known.get(summary["name"]) == listed_as:
                unchanged.append(summary["name"])
                continue
            try:
                answer = codepipeline.get_pipeline(name=summary["name"])
            except ClientError as exc:
                if _error_code(exc) == "PipelineNotFoundException":
                    continue  # deleted between the listing and now
                raise
            declaration, metadata = answer["pipeline"], answer.get("metadata", {})
            arn = metadata.get("pipelineArn") or (
                f"arn:aws:codepipeline:{region}:{account_id}:{declaration['name']}"
            )
            tags = {
                key: value
                for tag_page in _pages(codepipeline, "list_tags_for_resource", resourceArn=arn)
                for key, value in _tags(tag_page.get("tags", []), "key", "value").items()
            }
            pipelines.append(
                Pipeline(
                    name=declaration["name"],
                    region=region,
                    account_id=account_id,
                    arn=arn,
                    role_arn=declaration.get("roleArn", ""),
                    stages=tuple(
                        PipelineStage(
                            name=stage["name"],
                            actions=tuple(
                                PipelineAction(
                                    name=action["name"], category=action["actionTypeId"]["category"]
                                )
                                for action in stage.get("actions", [])
                            ),
                        )
                        for stage in declaration.get("stages", [])
                    ),
                    tags=tags,
                    listed_as=listed_as,
                )
            )
    return PipelineListing(
        read=tuple(sorted(pipelines, key=lambda pipeline: pipeline.name)), unchanged=tuple(sorted(unchanged))
    )


# --- IAM roles ---


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _policy_document(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    # boto3 decodes IAM policy documents into dicts; the raw API (and some tools) give URL-encoded JSON.
    if isinstance(document, Mapping):
        return document
    text = document.strip()
    if not text.startswith("{"):
        text = urllib.parse.unquote(text)
    loaded = json.loads(text)
    return loaded if isinstance(loaded, Mapping) else {}


def _names_service(principal: Any, service: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    return service in _as_list(principal.get("Service")) or "*" in _as_list(principal.get("AWS"))


def _covers_assume_role(statement: Mapping[str, Any]) -> bool:
    # Actions are case-insensitive and may carry wildcards ("sts:*", "sts:Assume*", "*").
    def matches(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase("sts:assumerole", str(p).lower()) for p in _as_list(patterns))

    if "NotAction" in statement:
        return not matches(statement["NotAction"])
    return matches(statement.get("Action"))


def _applies_to_service(statement: Mapping[str, Any], service: str) -> bool:
    if "NotPrincipal" in statement:
        return not _names_service(statement["NotPrincipal"], service)
    return _names_service(statement.get("Principal"), service)


def trusts_service(document: str | Mapping[str, Any], service: str = CODEPIPELINE_SERVICE) -> bool:
    """Does this trust policy let ``service`` assume the role?

    - ``Principal.Service`` and ``Action`` may be a string or a list; actions may be wildcards or NotAction.
    - An Allow must name the service itself: ``Principal: "*"`` (everyone) is deliberately not counted as
      trusting codepipeline — a role like that should never be handed out through a grant.
    - An Allow with a ``Condition`` still counts: the usual conditions on a service principal
      (``aws:SourceAccount``, ``aws:SourceArn``) are confused-deputy guards, not a refusal of the service.
    - An unconditional Deny that covers the service (by name, ``*``, or a NotPrincipal that leaves it out)
      wins over any Allow. A conditional Deny only applies sometimes, so it does not take the trust away.
    - A document that cannot be read trusts nobody.
    """
    try:
        statements = _as_list(_policy_document(document).get("Statement"))
    except (ValueError, TypeError):
        return False
    allowed = False
    for statement in statements:
        if not isinstance(statement, Mapping) or not _covers_assume_role(statement):
            continue
        effect = statement.get("Effect")
        if effect == "Deny" and "Condition" not in statement and _applies_to_service(statement, service):
            return False
        if (
            effect == "Allow"
            and "NotPrincipal" not in statement
            and isinstance(statement.get("Principal"), Mapping)
            and service in _as_list(statement["Principal"].get("Service"))
        ):
            allowed = True
    return allowed


def list_roles(*, account_id: str, role_arn: str | None = None) -> list[Role]:
    """Every IAM role of one account, with its trust verdict and tags.

    ListRoles does not return tags (AWS documents that Tags is only filled by GetRole), so each role costs a
    ListRoleTags. Service-linked roles (path ``/aws-service-role/``) are skipped: nobody can pass them.
    """
    iam = _client("iam", role_arn=role_arn, account_id=account_id)
    roles = []
    for page in _pages(iam, "list_roles"):
        for item in page["Roles"]:
            if item.get("Path", "/").startswith("/aws-service-role/"):
                continue
            tags = {
                key: value
                for tag_page in _pages(iam, "list_role_tags", RoleName=item["RoleName"])
                for key, value in _tags(tag_page.get("Tags", [])).items()
            }
            roles.append(
                Role(
                    arn=item["Arn"],
                    name=item["RoleName"],
                    path=item.get("Path", "/"),
                    account_id=account_of(item["Arn"]),
                    trusts_codepipeline=trusts_service(item.get("AssumeRolePolicyDocument") or "{}"),
                    tags=tags,
                )
            )
    return sorted(roles, key=lambda role: role.arn)


# --- IAM users and groups ---


def _identities(
    operation: str, result_key: str, prefix: str, *, account_id: str, role_arn: str | None
) -> list[IamIdentity]:
    iam = _client("iam", role_arn=role_arn, account_id=account_id)
    found = [
        IamIdentity(
            arn=item["Arn"],
            name=item[f"{prefix}Name"],
            path=item.get("Path", "/"),
            account_id=account_of(item["Arn"]),
        )
        for page in _pages(iam, operation)
        for item in page[result_key]
    ]
    return sorted(found, key=lambda identity: identity.arn)


def list_iam_users(*, account_id: str, role_arn: str | None = None) -> list[IamIdentity]:
    """Every IAM user of one account (ListUsers, paginated; no per-user calls)."""
    return _identities("list_users", "Users", "User", account_id=account_id, role_arn=role_arn)


def iam_group_members(group_name: str, *, account_id: str, role_arn: str | None = None) -> tuple[str, ...]:
    """ARNs of the IAM users in one group (GetGroup, paginated)."""
    iam = _client("iam", role_arn=role_arn, account_id=account_id)
    return tuple(
        sorted(
            user["Arn"] for page in _pages(iam, "get_group", GroupName=group_name) for user in page["Users"]
        )
    )


def list_iam_groups(*, account_id: str, role_arn: str | None = None) -> list[IamIdentity]:
    """Every IAM group of one account with its members (ListGroups, then GetGroup per group: a grant to a group
    reaches its members, and the approval rules need to know who they are)."""
    groups = _identities("list_groups", "Groups", "Group", account_id=account_id, role_arn=role_arn)
    return [
        IamIdentity(
            arn=group.arn,
            name=group.name,
            path=group.path,
            account_id=group.account_id,
            members=iam_group_members(group.name, account_id=account_id, role_arn=role_arn),
        )
        for group in groups
    ]


# --- IAM Identity Center ---


def identity_center(*, region: str | None = None) -> IdentityCenter | None:
    """The organization's Identity Center instance, or None when Identity Center is not enabled.

    Identity Center lives in one region; ``region`` defaults to ``AWS_DEFAULT_REGION``.
    """
    sso_admin = _client("sso-admin", region=region)
    for page in _pages(sso_admin, "list_instances"):
        for instance in page.get("Instances", []):
            if instance.get("Status", "ACTIVE") == "ACTIVE":
                return IdentityCenter(
                    instance_arn=instance["InstanceArn"], identity_store_id=instance["IdentityStoreId"]
                )
    return None


def list_permission_sets(instance_arn: str, *, region: str | None = None) -> list[PermissionSet]:
    sso_admin = _client("sso-admin", region=region)
    permission_sets = []
    for page in _pages(sso_admin, "list_permission_sets", InstanceArn=instance_arn):
        for arn in page.get("PermissionSets", []):
            described = sso_admin.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)[
                "PermissionSet"
            ]
            where = {"InstanceArn": instance_arn, "PermissionSetArn": arn}
            managed = tuple(
                sorted(
                    item["Arn"]
                    for page in _pages(sso_admin, "list_managed_policies_in_permission_set", **where)
                    for item in page.get("AttachedManagedPolicies", [])
                )
            )
            customer = tuple(
                sorted(
                    f"{item.get('Path', '/')}{item['Name']}"
                    for page in _pages(
                        sso_admin, "list_customer_managed_policy_references_in_permission_set", **where
                    )
                    for item in page.get("CustomerManagedPolicyReferences", [])
                )
            )
            inline = sso_admin.get_inline_policy_for_permission_set(**where).get("InlinePolicy") or ""
            permission_sets.append(
                PermissionSet(
                    arn=arn,
                    name=described["Name"],
                    description=described.get("Description", ""),
                    session_duration=described.get("SessionDuration", "PT1H"),
                    managed_policies=managed,
                    customer_managed_policies=customer,
                    inline_policy=inline,
                )
            )
    return sorted(permission_sets, key=lambda permission_set: permission_set.name)


def _primary_email(emails: list[Mapping[str, Any]]) -> str:
    for email in emails:
        if email.get("Primary"):
            return str(email.get("Value", ""))
    return str(emails[0].get("Value", "")) if emails else ""


def list_ic_users(identity_store_id: str, *, region: str | None = None) -> list[IdentityCenterUser]:
    identitystore = _client("identitystore", region=region)
    users = [
        IdentityCenterUser(
            user_id=item["UserId"],
            user_name=item.get("UserName", ""),
            display_name=item.get("DisplayName", "") or item.get("UserName", ""),
            email=_primary_email(item.get("Emails", [])),
        )
        for page in _pages(identitystore, "list_users", IdentityStoreId=identity_store_id)
        for item in page.get("Users", [])
    ]
    return sorted(users, key=lambda user: user.user_name)


def ic_group_members(identity_store_id: str, group_id: str, *, region: str | None = None) -> tuple[str, ...]:
    """User ids of one Identity Center group's members (ListGroupMemberships, paginated)."""
    identitystore = _client("identitystore", region=region)
    return tuple(
        sorted(
            item["MemberId"]["UserId"]
            for page in _pages(
                identitystore, "list_group_memberships", IdentityStoreId=identity_store_id, GroupId=group_id
            )
            for item in page.get("GroupMemberships", [])
            if "UserId" in item.get("MemberId", {})
        )
    )


def list_ic_groups(identity_store_id: str, *, region: str | None = None) -> list[IdentityCenterGroup]:
    identitystore = _client("identitystore", region=region)
    groups = [
        IdentityCenterGroup(
            group_id=item["GroupId"],
            display_name=item.get("DisplayName", ""),
            description=item.get("Description", ""),
            member_ids=ic_group_members(identity_store_id, item["GroupId"], region=region),
        )
        for page in _pages(identitystore, "list_groups", IdentityStoreId=identity_store_id)
        for item in page.get("Groups", [])
    ]
    return sorted(groups, key=lambda group: group.display_name)
