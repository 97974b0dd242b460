"""Rules as code: the rules file (approval and eligibility rules in YAML), its schema, and its diff in words.

Reads only. The file is parsed (duplicate keys refused), checked against ``rules.schema.json`` and against the
catalog (accounts, pipelines, groups, users and permission sets it names must exist), then turned into *specs*:
one plain dict per rule in a canonical form, which is also what the database's rules turn into. Comparing the
two gives the plan; ``governance.rule_changes`` writes it. The admin's pending changes use the same specs, so a
change in the admin and a change in the file are described and applied by the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from jsonschema import Draft202012Validator

from accessrequests.authz.routing import lineages
from accessrequests.core.scope import AccountFacts, AccountScope, RouteRule, scope_words
from accessrequests.core.wording import counted
from accessrequests.models import (
    KNOWN_ENVIRONMENTS,
    AccessLevel,
    ApprovalRule,
    AwsAccount,
    ChatApproval,
    EligibilityRule,
    OrganizationalUnit,
    PermissionSet,
    Pipeline,
    RequestKind,
    RuleTarget,
    pipeline_only,
)

SCHEMA_PATH = Path(__file__).with_name("rules.schema.json")
MAX_FILE_BYTES = 1_000_000

# The approval rule's fields in the file, in the order an export writes them, and their defaults.
APPROVAL_DEFAULTS: dict[str, Any] = {
    "priority": 100,
    "enabled": True,
    "approvals": 1,
    "max_duration_hours": 8,
    "accounts": [],
    "units": [],
    "account_tags": {},
    "environments": [],
    "pipelines": [],
    "kinds": [],
    "levels": [],
    "approver_groups": [],
    "approver_users": [],
    "allow_permanent": False,
    "auto_approve_low_risk": False,
    "allow_privileged_permission_sets": False,
    "contact": "",
    "slack_channel": "",
    "chat_approval": ChatApproval.OFF.value,
    "break_glass_groups": [],
    "break_glass_users": [],
    "break_glass_max_hours": 1,
    "break_glass_kinds": pipeline_only(),
}
ELIGIBILITY_DEFAULTS: dict[str, Any] = {
    "description": "",
    "kinds": [],
    "accounts": [],
    "units": [],
    "account_tags": {},
    "environments": [],
    "permission_sets": [],
    "groups": [],
    "users": [],
}
# Lists where "empty" means "any": a change from or to empty is a change of scope, said as such.
ANY_LISTS = {
    "accounts": "any account",
    "units": "any unit",
    "account_tags": "any tags",
    "environments": "any environment",
    "pipelines": "any pipeline",
    "kinds": "any kind",
    "levels": "any level",
}
ANY_LISTS_ELIGIBILITY = {**ANY_LISTS, "permission_sets": "any permission set"}

# How a field is named in a sentence, and what one of its items is called.
LABELS = {
    "priority": "priority",
    "enabled": "enabled",
    "approvals": "approvals",
    "max_duration_hours": "max duration (hours)",
    "allow_permanent": "permanent access",
    "auto_approve_low_risk": "auto-approval of low-risk requests",
    "allow_privileged_permission_sets": "privileged permission sets",
    "contact": "contact",
    "slack_channel": "Slack channel",
    "chat_approval": "chat approval",
    "break_glass_max_hours": "break-glass max duration (hours)",
    "description": "description",
}
ITEM_LABELS = {
    "accounts": "account",
    "units": "unit",
    "account_tags": "account tag",
    "environments": "environment",
    "pipelines": "pipeline",
    "kinds": "kind",
    "levels": "level",
    "approver_groups": "group",
    "approver_users": "user",
    "break_glass_groups": "break-glass group",
    "break_glass_users": "break-glass user",
    "break_glass_kinds": "break-glass kind",
    "groups": "group",
    "users": "user",
    "permission_sets": "permission set",
    "principals": "principal",
}
KIND_ORDER = list(RequestKind.values)
LEVEL_ORDER = list(AccessLevel.values)
ENVIRONMENT_ORDER = list(KNOWN_ENVIRONMENTS)


class RulesFileError(Exception):
    """The rules file cannot be used as it is; ``errors`` lists every problem, each with its path."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


# --- reading the file ----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; in a rules file that hides a mistake, so it is an error."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse(text: str) -> Any:
    """The YAML document in ``text``; raises RulesFileError with the line and column of a syntax error."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise RulesFileError([f"the file is larger than {MAX_FILE_BYTES:,} bytes"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesFileError([f"{where}not valid YAML: {problem}"]) from None


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError([f"cannot read {path}: {exc}"]) from None


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_problems(document: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Every schema error as (its path, ``path: message``), in the file's order."""
    validator = Draft202012Validator(schema())
    errors = sorted(
        validator.iter_errors(document),
        key=lambda e: [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in e.absolute_path],
    )
    found = []
    for error in errors:
        message = error.message
        last = error.absolute_path[-1] if error.absolute_path else None
        if (
            error.validator == "type"
            and isinstance(error.instance, int)
            and "accounts" in error.absolute_path
        ):
            message += f" (quote account ids: '{error.instance:012d}')"
        elif error.validator == "pattern" and last is not None and "accounts" in error.absolute_path:
            message = f"{error.instance!r} is not a 12-digit account id"
        elif (
            error.validator == "type"
            and isinstance(error.instance, str)
            and len(error.absolute_path) >= 2
            and error.absolute_path[-2] == "account_tags"
        ):
            message += f" (list the values a tag may have: [{error.instance}])"
        if len(message) > 300:  # the message repeats the offending value, which may be a whole section
            message = message[:297] + "…"
        found.append((tuple(error.absolute_path), f"{_path(error.absolute_path)}: {message}"))
    return found


def schema_errors(document: Any) -> list[str]:
    """Every schema error, each as ``path: message`` (e.g. ``rules[2].approvals: -1 is less than the minimum
    of 1``), in the file's order."""
    return [message for _, message in _schema_problems(document)]


SECTIONS = ("rules", "eligibility")


def _well_formed_part(document: Any, problems: list[tuple[tuple[Any, ...], str]]) -> dict[str, list[Any]]:
    """The sections of ``document`` with every entry the schema refused replaced by None (so the rest keep
    their positions, and their paths in messages stay true); a section that is not a list is left out."""
    if not isinstance(document, dict):
        return {}
    refused = {path[:2] for path, _ in problems if len(path) >= 2}
    broken_sections = {path[0] for path, _ in problems if len(path) == 1}
    part: dict[str, list[Any]] = {}
    for section in SECTIONS:
        entries = document.get(section) or []
        if section in broken_sections or not isinstance(entries, list):
            continue
        part[section] = [None if (section, i) in refused else entry for i, entry in enumerate(entries)]
    return part


def _duplicates(entries: list[dict[str, Any] | None], section: str) -> list[str]:
    seen: dict[str, int] = {}
    errors = []
    for i, entry in enumerate(entries):
        if entry is None:  # refused by the schema, reported there
            continue
        name = entry["name"].strip()
        if name in seen:
            errors.append(f"{section}[{i}].name: duplicate name '{name}' (also {section}[{seen[name]}])")
        seen.setdefault(name, i)
    return errors


# --- the catalog the file refers to --------------------------------------------------------------------


class Catalog:
    """The objects a rules file may name, each kind looked up once, and only when asked for (a plan needs no
    pipelines, and an organization may have tens of thousands)."""

    @classmethod
    def load(cls) -> Catalog:
        return cls()

    @cached_property
    def accounts(self) -> dict[str, AwsAccount]:
        return {a.account_id: a for a in AwsAccount.objects.all()}

    @cached_property
    def pipelines(self) -> dict[str, Pipeline]:
        return {p.arn: p for p in Pipeline.objects.select_related("account")}

    @cached_property
    def groups(self) -> dict[str, Group]:
        return {g.name: g for g in Group.objects.all()}

    @cached_property
    def users(self) -> dict[str, Any]:
        return {u.get_username(): u for u in get_user_model().objects.all()}

    @cached_property
    def permission_sets(self) -> list[PermissionSet]:
        return list(PermissionSet.objects.all())

    @cached_property
    def units(self) -> dict[str, OrganizationalUnit]:
        """Roots and organizational units by id (``r-…``, ``ou-…``)."""
        return {u.ou_id: u for u in OrganizationalUnit.objects.all()}

    @cached_property
    def _units_by_path(self) -> dict[str, list[OrganizationalUnit]]:
        found: dict[str, list[OrganizationalUnit]] = {}
        for unit in self.units.values():
            found.setdefault(unit.path, []).append(unit)
        return found

    def unit(self, ref: str) -> tuple[OrganizationalUnit | None, str | None]:
        """The unit an id or a path ("Root / Workloads / Payments") names, or why none."""
        if ref in self.units:
            return self.units[ref], None
        found = self._units_by_path.get(ref) or self._units_by_path.get(
            " / ".join(part.strip() for part in ref.split("/"))
        )
        if not found:
            return None, f"unknown organizational unit '{ref}'"
        if len(found) > 1:
            return None, f"organizational unit path '{ref}' is ambiguous: name it by id ({found[0].ou_id}, …)"
        return found[0], None

    def unit_ref(self, unit: OrganizationalUnit) -> str:
        """How a file names a unit: by path, which people read, or by id where the path is not unique."""
        return unit.path if unit.path and len(self._units_by_path.get(unit.path, [])) == 1 else unit.ou_id

    def account_facts(self) -> list[AccountFacts]:
        """What routing knows of every account requests can be filed in (enabled, in the organization)."""
        above = lineages((u.pk, u.ou_id, u.parent_id) for u in self.units.values())
        return [
            AccountFacts(
                account_id=a.account_id,
                name=a.name,
                environment=a.environment,
                tags=a.tags or {},
                units=above.get(a.ou_id, frozenset()) if a.ou_id else frozenset(),
            )
            for a in self.accounts.values()
            if a.enabled and a.present
        ]

    def permission_set(self, ref: str) -> tuple[PermissionSet | None, str | None]:
        """The permission set a name or ARN names, or why none."""
        if ref.startswith("arn:"):
            found = [p for p in self.permission_sets if p.arn == ref]
        else:
            found = [p for p in self.permission_sets if p.name == ref]
        if not found:
            return None, f"unknown permission set '{ref}'"
        if len(found) > 1:
            return (
                None,
                f"permission set '{ref}' is ambiguous (several Identity Center instances): name it by ARN",
            )
        if found[0].portal_owned:
            return None, f"'{ref}' is one of Gatehouse's own permission sets, which are never requestable"
        return found[0], None

    def permission_set_ref(self, permission_set: PermissionSet) -> str:
        """How a file names it: by name, or by ARN where the name is not unique."""
        same = [p for p in self.permission_sets if p.name == permission_set.name]
        return permission_set.name if len(same) == 1 else permission_set.arn


def semantic_errors(document: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """What the schema cannot know: duplicate names, and names of things that do not exist. An entry that is
    None (refused by the schema) is skipped."""
    errors: list[str] = []
    rules = document.get("rules") or []
    eligibility = document.get("eligibility") or []
    errors += _duplicates(rules, "rules")
    errors += _duplicates(eligibility, "eligibility")

    def check(
        section: str, i: int, entry: Mapping[str, Any], key: str, known: Mapping[str, Any], what: str
    ) -> None:
        for j, ref in enumerate(entry.get(key) or []):
            if ref not in known:
                errors.append(f"{section}[{i}].{key}[{j}]: unknown {what} '{ref}'")

    def check_units(section: str, i: int, entry: Mapping[str, Any]) -> None:
        for j, ref in enumerate(entry.get("units") or []):
            _, problem = catalog.unit(ref)
            if problem:
                errors.append(f"{section}[{i}].units[{j}]: {problem}")

    for i, entry in enumerate(rules):
        if entry is None:
            continue
        check("rules", i, entry, "accounts", catalog.accounts, "account")
        check_units("rules", i, entry)
        if entry.get("pipelines"):
            check("rules", i, entry, "pipelines", catalog.pipelines, "pipeline")
        check("rules", i, entry, "approver_groups", catalog.groups, "group")
        check("rules", i, entry, "approver_users", catalog.users, "user")
        check("rules", i, entry, "break_glass_groups", catalog.groups, "group")
        check("rules", i, entry, "break_glass_users", catalog.users, "user")
        accounts = set(entry.get("accounts") or [])
        for j, arn in enumerate(entry.get("pipelines") or []):
            pipeline = catalog.pipelines.get(arn)
            if pipeline is not None and accounts and pipeline.account.account_id not in accounts:
                errors.append(
                    f"rules[{i}].pipelines[{j}]: pipeline '{arn}' is in account {pipeline.account.account_id}, "
                    "which this rule's accounts leave out, so the rule could never route it"
                )
    for i, entry in enumerate(eligibility):
        if entry is None:
            continue
        check("eligibility", i, entry, "accounts", catalog.accounts, "account")
        check_units("eligibility", i, entry)
        check("eligibility", i, entry, "groups", catalog.groups, "group")
        check("eligibility", i, entry, "users", catalog.users, "user")
        for j, ref in enumerate(entry.get("permission_sets") or []):
            _, problem = catalog.permission_set(ref)
            if problem:
                errors.append(f"eligibility[{i}].permission_sets[{j}]: {problem}")
        kinds = entry.get("kinds") or []
        if entry.get("permission_sets") and kinds and RequestKind.PERMISSION_SET not in kinds:
            errors.append(
                f"eligibility[{i}].permission_sets: its kinds leave out permission_set, so it could never apply"
            )
    return errors


def validate(text: str, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """The checked document; raises RulesFileError listing every problem: the schema's first, then what the
    catalog says about the entries the schema accepted (so one run shows all there is to fix). Without
    ``catalog`` only the syntax, the schema and duplicate names are checked (CI with no database)."""
    document = parse(text)
    if document is None:
        raise RulesFileError(["the file is empty; it starts with `version: 1` and lists `rules:`"])
    problems = _schema_problems(document)
    part = _well_formed_part(document, problems)
    if catalog is None:
        later = [error for section in SECTIONS for error in _duplicates(part.get(section) or [], section)]
    else:
        later = semantic_errors(part, catalog)
    errors = [message for _, message in problems] + later
    if errors:
        raise RulesFileError(errors)
    return document


# --- specs: one rule as a canonical dict ---------------------------------------------------------------


def _ordered(values: Iterable[str], order: list[str] | None = None) -> list[str]:
    unique = set(values)
    if order is not None:
        return [v for v in order if v in unique]
    return sorted(unique)


def _tags(value: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    return {str(key): sorted({str(v) for v in value[key]}) for key in sorted(value)}


def _as_exported(
    refs: Iterable[str], find: Callable[[str], tuple[Any, str | None]], ref: Callable[[Any], str]
) -> list[str]:
    """References as an export writes them (a unit by path, a permission set by name); unknown ones as given."""
    found = []
    for value in refs:
        item, _ = find(value)
        found.append(ref(item) if item is not None else value)
    return found


def _scope_in_canonical_form(spec: dict[str, Any], catalog: Catalog | None) -> None:
    """Accounts, units (by the reference an export would write), tags and environments, each in one order."""
    if catalog is not None:
        spec["units"] = _as_exported(spec["units"], catalog.unit, catalog.unit_ref)
    spec["accounts"] = _ordered(spec["accounts"])
    spec["units"] = _ordered(spec["units"])
    spec["account_tags"] = _tags(spec["account_tags"])
    spec["environments"] = _ordered(spec["environments"], ENVIRONMENT_ORDER)


def _with_defaults(entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": str(entry["name"]).strip()}
    for key, default in defaults.items():
        value = entry.get(key, default)
        spec[key] = (
            list(value) if isinstance(default, list) else dict(value) if isinstance(default, dict) else value
        )
    return spec


def approval_spec_from_entry(entry: Mapping[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    """A file entry (or an admin form's values) in canonical form: every field, lists sorted."""
    spec = _with_defaults(entry, APPROVAL_DEFAULTS)
    spec["kinds"] = _ordered(spec["kinds"], KIND_ORDER)
    spec["levels"] = _ordered(spec["levels"], LEVEL_ORDER)
    # None named is the default, pipeline access only: said the one way, so a file and the database compare.
    spec["break_glass_kinds"] = _ordered(spec["break_glass_kinds"] or pipeline_only(), KIND_ORDER)
    _scope_in_canonical_form(spec, catalog)
    for key in (
        "pipelines",
        "approver_groups",
        "approver_users",
        "break_glass_groups",
        "break_glass_users",
    ):
        spec[key] = _ordered(spec[key])
    return spec


def eligibility_spec_from_entry(entry: Mapping[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    spec = _with_defaults(entry, ELIGIBILITY_DEFAULTS)
    if catalog is not None:
        # A permission set named by ARN in the file is compared by the name the export would write.
        spec["permission_sets"] = _as_exported(
            spec["permission_sets"], catalog.permission_set, catalog.permission_set_ref
        )
    spec["kinds"] = _ordered(spec["kinds"], KIND_ORDER)
    _scope_in_canonical_form(spec, catalog)
    for key in ("permission_sets", "groups", "users"):
        spec[key] = _ordered(spec[key])
    return spec


def _scope_entry(rule: ApprovalRule | EligibilityRule, catalog: Catalog) -> dict[str, Any]:
    return {
        "accounts": [a.account_id for a in rule.accounts.all()],
        "units": [catalog.unit_ref(u) for u in rule.units.all()],
        "account_tags": dict(rule.account_tags or {}),
        "environments": list(rule.environments or []),
    }


def approval_spec(rule: ApprovalRule, catalog: Catalog | None = None) -> dict[str, Any]:
    catalog = catalog or Catalog.load()
    return approval_spec_from_entry(
        {
            "name": rule.name,
            "priority": rule.priority,
            "enabled": rule.enabled,
            **_scope_entry(rule, catalog),
            "pipelines": [p.arn for p in rule.pipelines.all()],
            "kinds": list(rule.kinds or []),
            "levels": list(rule.levels or []),
            "approver_groups": [g.name for g in rule.approver_groups.all()],
            "approver_users": [u.get_username() for u in rule.approver_users.all()],
            "approvals": rule.approvals_required,
            "max_duration_hours": rule.max_duration_hours,
            "allow_permanent": rule.allow_permanent,
            "auto_approve_low_risk": rule.auto_approve_low_risk,
            "allow_privileged_permission_sets": rule.allow_privileged_permission_sets,
            "contact": rule.contact,
            "slack_channel": rule.slack_channel,
            "chat_approval": rule.chat_approval,
            "break_glass_groups": [g.name for g in rule.break_glass_groups.all()],
            "break_glass_users": [u.get_username() for u in rule.break_glass_users.all()],
            "break_glass_max_hours": rule.break_glass_max_hours,
            "break_glass_kinds": list(rule.break_glass_kinds or []),
        },
        catalog,
    )


def eligibility_spec(rule: EligibilityRule, catalog: Catalog | None = None) -> dict[str, Any]:
    catalog = catalog or Catalog.load()
    return eligibility_spec_from_entry(
        {
            "name": rule.name,
            "description": rule.description,
            "kinds": list(rule.kinds or []),
            **_scope_entry(rule, catalog),
            "permission_sets": [catalog.permission_set_ref(p) for p in rule.permission_sets.all()],
            "groups": [g.name for g in rule.groups.all()],
            "users": [u.get_username() for u in rule.users.all()],
        }
    )


def spec_of(
    target: str, rule: ApprovalRule | EligibilityRule, catalog: Catalog | None = None
) -> dict[str, Any]:
    if target == RuleTarget.APPROVAL_RULE:
        assert isinstance(rule, ApprovalRule)
        return approval_spec(rule, catalog)
    assert isinstance(rule, EligibilityRule)
    return eligibility_spec(rule, catalog)


def route_rules(specs: Iterable[Mapping[str, Any]], catalog: Catalog) -> list[RouteRule]:
    """Approval rule specs as routing sees them (the enabled ones): what a plan routes with, as a filing routes
    with the database's rules (``rules.route_rules``)."""
    found = []
    for spec in specs:
        if not spec["enabled"]:
            continue
        # A unit no longer known keeps its reference, which matches no account: never a wider scope than asked.
        units = [
            unit.ou_id if unit else ref for ref, (unit, _) in ((r, catalog.unit(r)) for r in spec["units"])
        ]
        found.append(
            RouteRule(
                name=spec["name"],
                priority=spec["priority"],
                approvals=spec["approvals"],
                scope=AccountScope.of(
                    accounts=spec["accounts"],
                    units=units,
                    tags=spec["account_tags"],
                    environments=spec["environments"],
                ),
                pipelines=frozenset(spec["pipelines"]),
                kinds=frozenset(spec["kinds"]),
                levels=frozenset(spec["levels"]),
                allow_privileged=spec["allow_privileged_permission_sets"],
                ref=spec,
            )
        )
    return found


@dataclass
class RuleSet:
    """Approval and eligibility rules as specs, by name."""

    approval: dict[str, dict[str, Any]] = field(default_factory=dict)
    eligibility: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any], catalog: Catalog) -> RuleSet:
        approval = [approval_spec_from_entry(e, catalog) for e in document.get("rules") or []]
        eligibility = [eligibility_spec_from_entry(e, catalog) for e in document.get("eligibility") or []]
        return cls({s["name"]: s for s in approval}, {s["name"]: s for s in eligibility})

    @classmethod
    def from_database(cls, catalog: Catalog | None = None) -> RuleSet:
        catalog = catalog or Catalog.load()
        approval = ApprovalRule.objects.prefetch_related(
            "accounts",
            "units",
            "pipelines",
            "approver_groups",
            "approver_users",
            "break_glass_groups",
            "break_glass_users",
        )
        eligibility = EligibilityRule.objects.prefetch_related(
            "accounts", "units", "permission_sets", "groups", "users"
        )
        return cls(
            {r.name: approval_spec(r, catalog) for r in approval},
            {r.name: eligibility_spec(r, catalog) for r in eligibility},
        )


# --- the diff, in words --------------------------------------------------------------------------------


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "" and key in LABELS:
        return "(none)"
    return str(value)


def _tag_items(tags: Mapping[str, Iterable[str]]) -> list[str]:
    return [f"{key}={value}" for key in sorted(tags) for value in tags[key]]


def describe_diff(before: Mapping[str, Any], after: Mapping[str, Any], *, target: str) -> list[str]:
    """What changes between two specs of one rule, as short phrases: "approvals 1 → 2", "adds group 'sre'"."""
    any_lists = ANY_LISTS if target == RuleTarget.APPROVAL_RULE else ANY_LISTS_ELIGIBILITY
    phrases = []
    if before.get("name") != after.get("name"):
        phrases.append(f"renamed '{before.get('name')}' → '{after.get('name')}'")
    for key in after:
        if key == "name":
            continue
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(new, dict) or isinstance(old, dict):
            # Account tags read as items, "team=payments", added and removed like a list's.
            old, new = _tag_items(old or {}), _tag_items(new or {})
        if isinstance(new, list) or isinstance(old, list):
            old, new = list(old or []), list(new or [])
            item = ITEM_LABELS.get(key, key)
            if key in any_lists and (not old or not new):
                shown = [", ".join(v) if v else any_lists[key] for v in (old, new)]
                phrases.append(f"{key.replace('_', ' ')} {shown[0]} → {shown[1]}")
                continue
            phrases += [f"adds {item} '{v}'" for v in new if v not in old]
            phrases += [f"removes {item} '{v}'" for v in old if v not in new]
        else:
            phrases.append(f"{LABELS.get(key, key)} {_value(key, old)} → {_value(key, new)}")
    return phrases


def _scope_words(spec: Mapping[str, Any], *, routing: bool) -> str:
    return scope_words(
        accounts=spec.get("accounts") or [],
        units=spec.get("units") or [],
        tags=spec.get("account_tags") or {},
        environments=spec.get("environments") or [],
        routing=routing,
    )


def _summary(spec: Mapping[str, Any], target: str) -> str:
    """A new rule in a few words (what a reviewer of the plan needs to see first)."""
    if target == RuleTarget.APPROVAL_RULE:
        who = [f"group '{g}'" for g in spec["approver_groups"]] + [
            f"user '{u}'" for u in spec["approver_users"]
        ]
        return (
            f"{counted(spec['approvals'], 'approval')} from {', '.join(who) or 'nobody'}, "
            f"at most {counted(spec['max_duration_hours'], 'hour')}, on {_scope_words(spec, routing=True)}, "
            f"for {', '.join(spec['kinds']) or 'any kind'}"
            + ("; auto-approves low-risk requests" if spec["auto_approve_low_risk"] else "")
            + ("" if spec["enabled"] else "; disabled")
        )
    who = [f"group '{g}'" for g in spec["groups"]] + [f"user '{u}'" for u in spec["users"]]
    what = (
        "permission sets " + ", ".join(spec["permission_sets"])
        if spec["permission_sets"]
        else ", ".join(spec["kinds"]) or "any kind"
    )
    return f"only {', '.join(who) or 'nobody'} may request {what} on {_scope_words(spec, routing=False)}"


@dataclass
class Change:
    """One rule added, changed, removed (or, when requests name it, disabled and kept)."""

    target: str
    operation: str  # "create", "update", "delete", "retire"
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    phrases: list[str]

    @property
    def noun(self) -> str:
        return "rule" if self.target == RuleTarget.APPROVAL_RULE else "eligibility rule"

    def sentence(self) -> str:
        return f"{self.noun} '{self.name}': " + "; ".join(self.phrases)


def change_between(target: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> Change | None:
    """The change from one spec to another (None: nothing to do)."""
    if before is None and after is not None:
        return Change(target, "create", after["name"], None, after, ["added: " + _summary(after, target)])
    if before is not None and after is None:
        return Change(target, "delete", before["name"], before, None, ["removed"])
    assert before is not None and after is not None
    phrases = describe_diff(before, after, target=target)
    return Change(target, "update", after["name"], before, after, phrases) if phrases else None


def plan(current: RuleSet, desired: RuleSet) -> list[Change]:
    """What applying ``desired`` over ``current`` changes, rule by rule, in a stable order.

    An approval rule that requests name cannot be deleted (they keep pointing at the rule that routed them): when
    the file leaves it out it is disabled and kept, and a disabled one left out is already as the file wants.
    """
    changes: list[Change] = []
    in_use = set(
        ApprovalRule.objects.filter(
            name__in=set(current.approval) - set(desired.approval), requests__isnull=False
        )
        .values_list("name", flat=True)
        .distinct()
    )
    for target, have, want in (
        (RuleTarget.APPROVAL_RULE, current.approval, desired.approval),
        (RuleTarget.ELIGIBILITY_RULE, current.eligibility, desired.eligibility),
    ):
        for name in want:
            change = change_between(target, have.get(name), want[name])
            if change is not None:
                changes.append(change)
        for name in sorted(set(have) - set(want)):
            spec = have[name]
            if target == RuleTarget.APPROVAL_RULE and name in in_use:
                if spec["enabled"]:
                    changes.append(
                        Change(
                            target,
                            "retire",
                            name,
                            spec,
                            {**spec, "enabled": False},
                            ["left out of the file: disabled and kept, because requests name it"],
                        )
                    )
                continue
            changes.append(Change(target, "delete", name, spec, None, ["removed"]))
    return changes


# --- export --------------------------------------------------------------------------------------------


def _entry(spec: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A spec as the file writes it: every field, so the file reads on its own."""
    return {"name": spec["name"], **{key: spec[key] for key in defaults}}


def export_document(catalog: Catalog | None = None) -> dict[str, Any]:
    current = RuleSet.from_database(catalog)
    approval = sorted(current.approval.values(), key=lambda s: (s["priority"], s["name"]))
    return {
        "version": 1,
        "rules": [_entry(s, APPROVAL_DEFAULTS) for s in approval],
        "eligibility": [_entry(s, ELIGIBILITY_DEFAULTS) for s in current.eligibility.values()],
    }


HEADER = """\
# Gatehouse rules: approval rules and eligibility rules (docs/rules.example.yaml explains every field).
# Check with `manage.py rules validate FILE`, see the change with `rules plan FILE`, make it with `rules apply FILE`.
"""


def dump(document: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=110)


def dump_rule(spec: Mapping[str, Any]) -> str:
    """One rule's spec as it would read in a rules file."""
    return yaml.safe_dump(dict(spec), sort_keys=False, allow_unicode=True, width=110)
