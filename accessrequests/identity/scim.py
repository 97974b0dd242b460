"""SCIM 2.0 provisioning: people and groups as the identity provider sends them (Okta, Entra ID), each change one
transaction with its audit event.

The identity provider owns who exists and who is in which group. Gatehouse keeps a portal user per SCIM user
(never deleted: requests and decisions point at it); ``active: false`` deactivates it, which takes its sessions,
tokens and the weight of its pending decisions at once (``signals`` → ``identity.people.user_offboard``).
Group membership decides the portal roles GATEHOUSE_OIDC_GROUP_ROLES names, and links members to the principals an
admin attached to the group (an attachment waits for a second admin; the links that follow from membership are the
identity provider's and apply at once, audited with before and after and announced to admins). Attributes Gatehouse does not keep (locale, title, the enterprise extension, a
password Okta may send) are accepted and dropped, never stored or audited.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.governance import governed
from accessrequests.identity.people import user_roles_sync
from accessrequests.models import Principal, ScimGroup, ScimUser
from accessrequests.notify import hooks as notify

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS = 100
MAX_MEMBERS = 1000


class ScimError(Exception):
    """A request the SCIM client must fix; ``status`` and ``scim_type`` as RFC 7644 §3.12 names them."""

    def __init__(self, status: int, detail: str, scim_type: str = ""):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def _invalid(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


@dataclass(frozen=True)
class UserFields:
    """What Gatehouse keeps of a SCIM user."""

    user_name: str
    external_id: str = ""
    display_name: str = ""
    given_name: str = ""
    family_name: str = ""
    email: str = ""
    active: bool = True


def _text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise _invalid(f"{name} must be a string.")
    value = value.strip()
    if len(value) > limit:
        raise _invalid(f"{name} is longer than {limit} characters.")
    return value


def _bool(value: Any, name: str = "active") -> bool:
    # Entra ID sends "False" and "True" as strings in PATCH operations.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(f"{name} must be true or false.")


def _user_name(value: Any) -> str:
    name = _text(value, "userName", 150)
    if not name:
        raise _invalid("userName is required.")
    try:
        UnicodeUsernameValidator()(name)
    except ValidationError:
        raise _invalid("userName may contain letters, digits and @ . + - _ only.") from None
    return name


def _email(value: Any) -> str:
    email = _text(value, "email", 254)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise _invalid(f"{email!r} is not an email address.") from None
    return email


def _primary_email(emails: Any) -> str:
    if emails in (None, []):
        return ""
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise _invalid("emails must be a list of objects.")
    chosen = next((e for e in emails if e.get("primary") in (True, "true", "True")), emails[0])
    return _email(chosen.get("value"))


def user_fields(payload: Any, *, before: UserFields | None = None) -> UserFields:
    """A User resource from a POST or PUT body (a PUT replaces what it names; ``active`` defaults to true)."""
    if not isinstance(payload, dict):
        raise _invalid("The body must be a SCIM User object.")
    name = payload.get("name") or {}
    if not isinstance(name, dict):
        raise _invalid("name must be an object.")
    active = payload.get("active", True)
    return UserFields(
        user_name=_user_name(payload.get("userName")),
        external_id=_text(payload.get("externalId"), "externalId", 255),
        display_name=_text(payload.get("displayName"), "displayName", 256),
        given_name=_text(name.get("givenName"), "name.givenName", 150),
        family_name=_text(name.get("familyName"), "name.familyName", 150),
        email=_primary_email(payload.get("emails")),
        active=_bool(active),
    )


_EMAIL_VALUE_PATH = re.compile(r'^emails\[(?:type eq "\w+"|primary eq true)\]\.value$', re.IGNORECASE)
_CORE_PREFIX = (USER_SCHEMA + ":").lower()


def _set_user_attribute(fields: UserFields, path: str, value: Any, op: str) -> UserFields:
    key = path.strip()
    if key.lower().startswith(_CORE_PREFIX):
        key = key[len(_CORE_PREFIX) :]
    low = key.lower()
    removing = op == "remove"
    if low == "active":
        if removing:
            raise _invalid("active cannot be removed.")
        return replace(fields, active=_bool(value))
    if low == "username":
        if removing:
            raise _invalid("userName cannot be removed.")
        return replace(fields, user_name=_user_name(value))
    if low == "externalid":
        return replace(fields, external_id="" if removing else _text(value, "externalId", 255))
    if low == "displayname":
        return replace(fields, display_name="" if removing else _text(value, "displayName", 256))
    if low == "name.givenname":
        return replace(fields, given_name="" if removing else _text(value, "name.givenName", 150))
    if low == "name.familyname":
        return replace(fields, family_name="" if removing else _text(value, "name.familyName", 150))
    if low == "name":
        if removing:
            return replace(fields, given_name="", family_name="")
        if not isinstance(value, dict):
            raise _invalid("name must be an object.")
        fields = replace(
            fields, given_name=_text(value.get("givenName", fields.given_name), "name.givenName", 150)
        )
        return replace(
            fields, family_name=_text(value.get("familyName", fields.family_name), "name.familyName", 150)
        )
    if low == "emails":
        return replace(fields, email="" if removing else _primary_email(value))
    if _EMAIL_VALUE_PATH.match(key):
        return replace(fields, email="" if removing else _email(value))
    return fields  # an attribute Gatehouse does not keep (locale, title, manager, roles, ...)


def _operations(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("Operations"), list):
        raise _invalid("A PATCH body has an Operations list (RFC 7644 §3.5.2).")
    operations = payload["Operations"]
    if not operations or len(operations) > MAX_OPERATIONS:
        raise _invalid(f"Send between 1 and {MAX_OPERATIONS} operations.")
    for operation in operations:
        if not isinstance(operation, dict) or str(operation.get("op", "")).lower() not in (
            "add",
            "replace",
            "remove",
        ):
            raise _invalid("Each operation's op is add, replace or remove.")
        if operation.get("path") is not None and not isinstance(operation.get("path"), str):
            raise ScimError(400, "path must be a string.", "invalidPath")
    return operations


def patched_user_fields(fields: UserFields, payload: Any) -> UserFields:
    """Apply PATCH operations as Okta and Entra ID send them: with a path (``active``, ``name.familyName``,
    ``emails[type eq "work"].value``) or without one and an object of attributes (Okta's deactivation)."""
    for operation in _operations(payload):
        op = operation["op"].lower()
        path, value = operation.get("path"), operation.get("value")
        if path:
            fields = _set_user_attribute(fields, path, value, op)
        elif op == "remove":
            raise ScimError(400, "A remove operation needs a path.", "noTarget")
        elif isinstance(value, dict):
            for key, item in value.items():
                fields = _set_user_attribute(fields, key, item, op)
        else:
            raise _invalid("An operation without a path carries an object of attributes.")
    return fields


def fields_of(scim_user: ScimUser) -> UserFields:
    user = scim_user.user
    return UserFields(
        user_name=scim_user.user_name,
        external_id=scim_user.external_id,
        display_name=scim_user.display_name,
        given_name=user.first_name,
        family_name=user.last_name,
        email=user.email,
        active=user.is_active,
    )


def _audit_user(action: str, scim_user: ScimUser, agent, before: UserFields | None, http_request) -> None:
    audit.record(
        action=action,
        object_type="user",
        object_id=scim_user.user_id,
        actor_label=f"{agent.name} (identity provider)",
        before=asdict(before) if before else None,
        after={**asdict(fields_of(scim_user)), "scim_id": str(scim_user.scim_id)},
        http_request=http_request,
    )


def _apply(user, scim_user: ScimUser, fields: UserFields) -> None:
    """Write ``fields`` to the portal user; a change of ``active`` goes through ``save()`` so the deactivation
    signal (tokens, sessions, pending decisions, audit) always runs."""
    user.username = fields.user_name
    user.email = fields.email
    user.first_name = fields.given_name
    user.last_name = fields.family_name
    user.is_active = fields.active
    user.save()
    scim_user.user_name = fields.user_name
    scim_user.external_id = fields.external_id
    scim_user.display_name = fields.display_name
    scim_user.save()
    # The identity provider vouches for the address: it is the verified one Slack users are matched by.
    EmailAddress.objects.filter(user=user).exclude(email__iexact=fields.email).delete()
    if fields.email:
        EmailAddress.objects.update_or_create(
            user=user, email=fields.email, defaults={"verified": True, "primary": True}
        )


def _live_user(scim_id: Any, *, lock: bool = False) -> ScimUser:
    try:
        key = uuid.UUID(str(scim_id))
    except ValueError:
        raise ScimError(404, "No such user.") from None
    qs = ScimUser.objects.select_related("user").filter(scim_id=key, deleted_at__isnull=True)
    found = (qs.select_for_update() if lock else qs).first()
    if found is None:
        raise ScimError(404, "No such user.")
    return found


def _unique_user_name(fields: UserFields, *, other_than: ScimUser | None = None) -> None:
    taken = ScimUser.objects.filter(user_name__iexact=fields.user_name, deleted_at__isnull=True)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    User = get_user_model()
    clash = User.objects.filter(username__iexact=fields.user_name)
    if other_than is not None:
        clash = clash.exclude(pk=other_than.user_id)
    if taken.exists() or (other_than is not None and clash.exists()):
        raise ScimError(409, f"A user named {fields.user_name} exists already.", "uniqueness")


def scim_user_create(*, agent, fields: UserFields, http_request=None) -> ScimUser:
    """Provision a person. A portal user of the same name that the identity provider never provisioned (made
    by an admin before SCIM was set up) is taken over rather than duplicated."""
    permissions.check(permissions.provision_problem(agent))
    User = get_user_model()
    try:
        with transaction.atomic():
            _unique_user_name(fields)
            user = User.objects.select_for_update().filter(username__iexact=fields.user_name).first()
            provisioned_before = user is not None and ScimUser.objects.filter(user=user).exists()
            if (
                user is not None
                and not provisioned_before
                and (not fields.email or user.email.lower() != fields.email.lower())
            ):
                # Taking over an account the identity provider never provisioned is only safe when it is visibly
                # the same person.
                raise ScimError(
                    409,
                    f"A portal user named {fields.user_name} exists with another email address; rename one of them.",
                    "uniqueness",
                )
            if user is None:
                user = User(username=fields.user_name, is_active=fields.active)
                user.set_unusable_password()  # people sign in through the identity provider
                user.save()
            scim_user = ScimUser.objects.filter(user=user).first()
            if scim_user is None:
                scim_user = ScimUser.objects.create(user=user, user_name=fields.user_name)
            else:  # provisioned, deleted, now provisioned again: a new resource for the same person
                scim_user.scim_id = uuid.uuid4()
                scim_user.deleted_at = None
            _apply(user, scim_user, fields)
            _audit_user("scim.user_created", scim_user, agent, None, http_request)
    except IntegrityError:
        raise ScimError(409, f"A user named {fields.user_name} exists already.", "uniqueness") from None
    return scim_user


def scim_user_update(*, agent, scim_id: Any, fields: UserFields, http_request=None) -> ScimUser:
    """Replace what Gatehouse keeps of a person (PUT, or PATCH after ``patched_user_fields``)."""
    permissions.check(permissions.provision_problem(agent))
    try:
        with transaction.atomic():
            scim_user = _live_user(scim_id, lock=True)
            before = fields_of(scim_user)
            if fields == before:
                return scim_user
            _unique_user_name(fields, other_than=scim_user)
            _apply(scim_user.user, scim_user, fields)
            _audit_user("scim.user_updated", scim_user, agent, before, http_request)
    except IntegrityError:
        raise ScimError(409, f"A user named {fields.user_name} exists already.", "uniqueness") from None
    return scim_user


def scim_user_delete(*, agent, scim_id: Any, http_request=None) -> None:
    """The identity provider deleted the person: deactivated (with everything that takes away), out of every
    group, and gone as a SCIM resource. The portal user stays for the history that names them."""
    permissions.check(permissions.provision_problem(agent))
    with transaction.atomic():
        scim_user = _live_user(scim_id, lock=True)
        before = fields_of(scim_user)
        user = scim_user.user
        if user.is_active:
            user.is_active = False
            user.save()
        left = list(user.scim_groups.all())
        for group in left:
            group.members.remove(user)
        scim_user.deleted_at = timezone.now()
        scim_user.save(update_fields=["deleted_at", "updated_at"])
        _audit_user("scim.user_deleted", scim_user, agent, before, http_request)
        _resync([user], left_groups={user.pk: left}, http_request=http_request)


# --- groups --------------------------------------------------------------------------------------------


def _live_group(scim_id: Any, *, lock: bool = False) -> ScimGroup:
    try:
        key = uuid.UUID(str(scim_id))
    except ValueError:
        raise ScimError(404, "No such group.") from None
    qs = ScimGroup.objects.filter(scim_id=key)
    found = (qs.select_for_update() if lock else qs).first()
    if found is None:
        raise ScimError(404, "No such group.")
    return found


def _member_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise _invalid("members must be a list of objects with a value.")
    if len(value) > MAX_MEMBERS:
        raise _invalid(f"Send at most {MAX_MEMBERS} members at once.")
    return [str(m.get("value", "")) for m in value]


def _users_for(member_ids: Iterable[str]) -> list:
    ids = list(member_ids)
    keys = []
    for raw in ids:
        try:
            keys.append(uuid.UUID(raw))
        except ValueError:
            raise _invalid(f"{raw!r} is not the id of a user here.") from None
    found = {
        str(s.scim_id): s.user
        for s in ScimUser.objects.select_related("user").filter(scim_id__in=keys, deleted_at__isnull=True)
    }
    missing = [raw for raw in ids if str(uuid.UUID(raw)) not in found]
    if missing:
        raise _invalid(f"No user here has the id {missing[0]}.")
    return [found[str(uuid.UUID(raw))] for raw in ids]


_MEMBER_FILTER_PATH = re.compile(r'^members\[value eq "([^"]+)"\]$', re.IGNORECASE)


@dataclass
class GroupChange:
    display_name: str
    external_id: str
    members: set[int]  # portal user ids


def group_change(group: ScimGroup | None, payload: Any, *, patch: bool) -> GroupChange:
    """The group a POST or PUT body describes, or the group after PATCH operations: Okta's
    ``members[value eq "id"]`` removals and path-less replaces, Entra ID's ``members`` add/remove lists."""
    if group is not None:
        change = GroupChange(
            group.display_name, group.external_id, set(group.members.values_list("pk", flat=True))
        )
    else:
        change = GroupChange("", "", set())
    if not patch:
        if not isinstance(payload, dict):
            raise _invalid("The body must be a SCIM Group object.")
        change.display_name = _text(payload.get("displayName"), "displayName", 256)
        change.external_id = _text(payload.get("externalId"), "externalId", 255)
        change.members = {u.pk for u in _users_for(_member_ids(payload.get("members")))}
    else:
        for operation in _operations(payload):
            op = operation["op"].lower()
            path = (operation.get("path") or "").strip()
            value = operation.get("value")
            low = path.lower()
            if not path:
                if op == "remove" or not isinstance(value, dict):
                    raise ScimError(
                        400, "An operation without a path carries an object of attributes.", "noTarget"
                    )
                if "displayName" in value:
                    change.display_name = _text(value["displayName"], "displayName", 256)
                if "externalId" in value:
                    change.external_id = _text(value["externalId"], "externalId", 255)
                if "members" in value:
                    ids = {u.pk for u in _users_for(_member_ids(value["members"]))}
                    change.members = change.members | ids if op == "add" else ids
            elif low == "displayname":
                if op == "remove":
                    raise _invalid("displayName cannot be removed.")
                change.display_name = _text(value, "displayName", 256)
            elif low == "externalid":
                change.external_id = "" if op == "remove" else _text(value, "externalId", 255)
            elif low == "members":
                ids = {u.pk for u in _users_for(_member_ids(value))}
                if op == "add":
                    change.members |= ids
                elif op == "replace":
                    change.members = ids
                else:
                    change.members = change.members - ids if value else set()
            elif match := _MEMBER_FILTER_PATH.match(path):
                if op != "remove":
                    raise ScimError(
                        400, "Add members with the path members and a list of values.", "invalidPath"
                    )
                change.members -= {u.pk for u in _users_for([match.group(1)])}
            else:
                raise ScimError(400, f"Groups have no attribute {path!r} that can be changed.", "invalidPath")
    if not change.display_name:
        raise _invalid("displayName is required.")
    return change


def _audit_group(
    action: str, group: ScimGroup, agent, before: dict | None, after: dict | None, http_request
) -> None:
    audit.record(
        action=action,
        object_type="scim_group",
        object_id=str(group.scim_id),
        actor_label=f"{agent.name} (identity provider)",
        before=before,
        after=after,
        http_request=http_request,
    )


def _group_facts(group: ScimGroup) -> dict[str, Any]:
    return {
        "display_name": group.display_name,
        "external_id": group.external_id,
        "members": sorted(group.members.values_list("username", flat=True)),
    }


def _resync(
    users: Iterable, *, left_groups: dict[int, list[ScimGroup]] | None = None, http_request=None
) -> None:
    """Roles and linked principals of ``users`` from the groups they are in now (called inside the change's
    transaction). A principal is unlinked when its user left the last group that linked it."""
    left_groups = left_groups or {}
    for user in users:
        groups = list(user.scim_groups.prefetch_related("principals"))
        user_roles_sync(
            user=user, idp_groups=[g.display_name for g in groups], source="scim", http_request=http_request
        )
        wanted = {p.pk for g in groups for p in g.principals.all()}
        gone = {p.pk for g in left_groups.get(user.pk, []) for p in g.principals.all()} - wanted
        linked_now = set(user.principals.values_list("pk", flat=True))
        add, remove = wanted - linked_now, gone & linked_now
        if not (add or remove):
            continue
        before = governed.user_facts(user)["principals"]
        if add:
            user.principals.add(*add)
        if remove:
            user.principals.remove(*remove)
        names = dict(Principal.objects.filter(pk__in=add | remove).values_list("pk", "external_id"))
        event = audit.record(
            action="identity.principals_synced",
            object_type="user",
            object_id=user.pk,
            actor_label="scim (identity provider)",
            before={"user": user.get_username(), "principals": before},
            after={
                "user": user.get_username(),
                "linked": sorted(names[pk] for pk in add),
                "unlinked": sorted(names[pk] for pk in remove),
                "principals": governed.user_facts(user)["principals"],
            },
            http_request=http_request,
        )
        notify.on_identity_changed(event)


def _save_group(group: ScimGroup, change: GroupChange) -> tuple[list, dict[int, list[ScimGroup]]]:
    """Write the change; returns the users whose membership (or whose group's name) changed."""
    User = get_user_model()
    renamed = group.pk is not None and group.display_name != change.display_name
    group.display_name = change.display_name
    group.external_id = change.external_id
    group.save()
    before = set(group.members.values_list("pk", flat=True))
    added, removed = change.members - before, before - change.members
    if added:
        group.members.add(*added)
    if removed:
        group.members.remove(*removed)
    touched = (before | change.members) if renamed else (added | removed)
    users = list(User.objects.filter(pk__in=touched))
    return users, {pk: [group] for pk in removed}


def scim_group_create(*, agent, change: GroupChange, http_request=None) -> ScimGroup:
    permissions.check(permissions.provision_problem(agent))
    try:
        with transaction.atomic():
            if ScimGroup.objects.filter(display_name=change.display_name).exists():
                raise ScimError(409, f"A group named {change.display_name} exists already.", "uniqueness")
            group = ScimGroup()
            users, left = _save_group(group, change)
            _audit_group("scim.group_created", group, agent, None, _group_facts(group), http_request)
            _resync(users, left_groups=left, http_request=http_request)
    except IntegrityError:
        raise ScimError(409, f"A group named {change.display_name} exists already.", "uniqueness") from None
    return group


def scim_group_update(*, agent, scim_id: Any, payload: Any, patch: bool, http_request=None) -> ScimGroup:
    permissions.check(permissions.provision_problem(agent))
    try:
        with transaction.atomic():
            group = _live_group(scim_id, lock=True)
            change = group_change(group, payload, patch=patch)
            before = _group_facts(group)
            if ScimGroup.objects.filter(display_name=change.display_name).exclude(pk=group.pk).exists():
                raise ScimError(409, f"A group named {change.display_name} exists already.", "uniqueness")
            users, left = _save_group(group, change)
            after = _group_facts(group)
            if after != before:
                _audit_group("scim.group_updated", group, agent, before, after, http_request)
            _resync(users, left_groups=left, http_request=http_request)
    except IntegrityError:
        raise ScimError(409, "A group of that name exists already.", "uniqueness") from None
    return group


def scim_group_delete(*, agent, scim_id: Any, http_request=None) -> None:
    permissions.check(permissions.provision_problem(agent))
    with transaction.atomic():
        group = _live_group(scim_id, lock=True)
        before = _group_facts(group)
        members = list(group.members.all())
        left = {user.pk: [group] for user in members}
        # Unlink first, while the group still says which principals it linked.
        group.members.clear()
        _resync(members, left_groups=left, http_request=http_request)
        _audit_group("scim.group_deleted", group, agent, before, None, http_request)
        group.delete()
