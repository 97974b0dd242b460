"""Audit events as OCSF 1.1.0 (Open Cybersecurity Schema Framework), the JSON that Amazon Security Lake and SIEMs
read. One OCSF class per kind of event:

| Gatehouse action | OCSF class | activity |
| --- | --- | --- |
| ``auth.login``, ``auth.login_failed``, ``auth.mfa_failed`` | Authentication (3002) | Logon, success or failure |
| ``auth.mfa_enrolled`` / ``auth.mfa_removed`` | Account Change (3001) | MFA Factor Enable / Disable |
| ``grant.applied`` / ``grant.revoked``, ``.expired``, ``.abandoned`` | User Access Management (3005) | Assign / Revoke Privileges |
| ``api.*`` | API Activity (6003) | Create / Read / Update / Delete by HTTP method |
| everything else (requests, decisions, catalog and rule edits, exports, drift) | Entity Management (3004) | Create / Read / Update / Delete / Other |

Version 1.1.0 because it is the one Security Lake accepts from custom sources. Each event carries the Gatehouse
chain row unchanged in ``unmapped.gatehouse``, so an OCSF export verifies offline like the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Gatehouse", "vendor_name": "Gatehouse"}

CATEGORY_NAMES = {3: "Identity & Access Management", 6: "Application Activity"}
CLASSES = {
    3001: ("Account Change", {10: "MFA Factor Enable", 11: "MFA Factor Disable", 99: "Other"}),
    3002: ("Authentication", {1: "Logon", 99: "Other"}),
    3004: ("Entity Management", {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}),
    3005: ("User Access Management", {1: "Assign Privileges", 2: "Revoke Privileges"}),
    6003: ("API Activity", {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}),
}
_API_ACTIVITY = {"post": 1, "get": 2, "head": 2, "put": 3, "patch": 3, "delete": 4}
_ENTITY_ACTIVITY = {
    "created": 1, "exported": 2, "changed": 3, "approved": 3, "denied": 3, "cancelled": 3,
    "auto_approved": 3, "approval_recorded": 3, "deleted": 4,
}  # fmt: skip
SEVERITY_INFORMATIONAL, SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH = 1, 2, 3, 4


def _class_and_activity(action: str) -> tuple[int, int]:
    family, _, verb = action.partition(".")
    if action in ("auth.login", "auth.login_failed", "auth.mfa_failed"):
        return 3002, 1
    if action == "auth.mfa_enrolled":
        return 3001, 10
    if action == "auth.mfa_removed":
        return 3001, 11
    if action == "grant.applied":
        return 3005, 1
    if action in ("grant.revoked", "grant.expired", "grant.abandoned"):
        return 3005, 2
    if family == "api":
        return 6003, _API_ACTIVITY.get(verb, 99)
    return 3004, _ENTITY_ACTIVITY.get(verb, 99)


def _severity(action: str) -> int:
    if action == "audit.integrity_failed":
        return SEVERITY_HIGH
    if action.startswith("drift.") or action.endswith(("_failed", ".failed")):
        return SEVERITY_MEDIUM if action.startswith("drift.") else SEVERITY_LOW
    return SEVERITY_INFORMATIONAL


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _actor_user(row: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {"name": row["actor_label"]}
    if row.get("actor_id") is not None:
        user["uid"] = str(row["actor_id"])
    return user


def _principal_user(row: dict[str, Any], principals: dict[int, dict[str, str]]) -> dict[str, Any]:
    known = principals.get(row.get("principal_id") or 0)
    if known:
        return {"name": known["name"], "uid": known["uid"], "type": known["type"]}
    return {"uid": str(row.get("principal_id") or ""), "name": f"principal {row.get('principal_id')}"}


def _privileges(row: dict[str, Any]) -> list[str]:
    actions: set[str] = set()
    for source in (row.get("after"), row.get("before")):
        for statement in (source or {}).get("statements", []) if isinstance(source, dict) else []:
            listed = statement.get("Action", [])
            actions.update([listed] if isinstance(listed, str) else listed)
    return sorted(actions) or [f"gatehouse grant {row['object_id']}"]


def to_ocsf(row: dict[str, Any], principals: dict[int, dict[str, str]] | None = None) -> dict[str, Any]:
    """One audit row (as ``audit.iter_chain`` yields it) as one OCSF event of its class."""
    principals = principals or {}
    action = row["action"]
    class_uid, activity_id = _class_and_activity(action)
    class_name, activities = CLASSES[class_uid]
    category_uid = class_uid // 1000
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": CATEGORY_NAMES[category_uid],
        "activity_id": activity_id,
        "activity_name": activities.get(activity_id, "Other"),
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activities.get(activity_id, 'Other')}",
        "time": _millis(row["created_at"]),
        "severity_id": _severity(action),
        "message": f"{row['actor_label']}: {action} {row['object_type']} {row['object_id']}".strip(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": PRODUCT,
            "uid": row["hash"],
            "sequence": row["seq"],
            "log_name": "gatehouse-audit",
            "event_code": action,
        },
        "unmapped": {"gatehouse": row},
    }
    if class_uid == 3002:
        failed = action.endswith("_failed")
        attempted = (row.get("after") or {}).get("login") if isinstance(row.get("after"), dict) else None
        event["user"] = {"name": attempted} if attempted else _actor_user(row)
        event["status_id"] = 2 if failed else 1
        event["status"] = "Failure" if failed else "Success"
        event["is_mfa"] = action == "auth.mfa_failed"
        event["service"] = {"name": "Gatehouse"}  # what was signed in to (OCSF wants it, or a dst_endpoint)
        if row.get("user_agent"):
            event["http_request"] = {"user_agent": row["user_agent"]}
    elif class_uid == 3001:
        event["user"] = _actor_user(row)
    elif class_uid == 3005:
        event["user"] = _principal_user(row, principals)
        event["privileges"] = _privileges(row)
    elif class_uid == 6003:
        event["actor"] = {"user": _actor_user(row)}
        event["api"] = {"operation": action.removeprefix("api.").upper() + " " + row["object_id"]}
        event["src_endpoint"] = {"ip": row["ip"]} if row.get("ip") else {"name": "unknown"}
    else:
        event["entity"] = {"name": row["object_type"]}
        if row["object_id"]:
            event["entity"]["uid"] = row["object_id"]
        # OCSF 1.1's Entity Management has no actor: the message names who (the row in unmapped has it too).
        event["comment"] = f"by {row['actor_label']}"
    if row.get("ip") and class_uid in (3001, 3002):
        event["src_endpoint"] = {"ip": row["ip"]}
    if class_uid == 3001:
        event["actor"] = {"user": _actor_user(row)}
    return event
