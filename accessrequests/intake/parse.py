"""Parse the AWS AccessDenied message an engineer pastes into Gatehouse.

AWS words a denial as::

    User: <principal arn> is not authorized to perform: <service:Action> [on resource: <resource>]
        [because no <type> policy allows the <service:Action> action
         | with an explicit deny in a(n) <type> policy[: <policy arn>]]

The CLI and boto3 wrap it as ``An error occurred (<code>) when calling the <Operation> operation: ...``, and
people paste it from log lines, JSON, Python reprs and documentation pages that break the ARN across lines.
IAM names its own resources short (``on resource: role CodePipelineServiceRole``); AWS prints some service
prefixes in capitals (``SNS:Publish``). This module is pure Python (no Django, no boto3) so it can be tested and
fuzzed on its own; whether a wrapped ARN's joined reading names something real is the catalog's question
(``accessrequests.intake.resolve``), so the parser hands over every reading the line breaks allow.

Every regex is anchored on literal text and uses possessive quantifiers or bounded windows, so no input can
make it backtrack catastrophically; input longer than MAX_MESSAGE_CHARS is refused before any regex runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from accessrequests.core import arns
from accessrequests.policy.actions import canonical_action, codepipeline_action_names

MAX_MESSAGE_CHARS = 20_000

EXPECTED = (
    "Paste the whole message that starts with 'User: arn:aws:…' and contains 'is not authorized to perform:'."
)
TOO_LONG = f"The message is longer than {MAX_MESSAGE_CHARS:,} characters; paste only the error."

# How far around the "is not authorized to perform:" anchor we look. IAM ARNs are at most a few hundred
# characters (path ≤ 512, names ≤ 64), so these windows bound the work per anchor without losing real text.
_PRINCIPAL_WINDOW = 1_500
_WRAPPER_WINDOW = 600
_TAIL_WINDOW = 3_000
# A real paste holds one denial, a log a handful; junk full of the anchor phrase gets an error, not a scan.
_MAX_ATTEMPTS = 50

_ANCHOR = re.compile(r"is\s++not\s++authorized\s++to\s++perform\s*+:", re.IGNORECASE)
_USER_LABEL = re.compile(r"\bUser\s*+:")
_WHITESPACE = re.compile(r"\s++")
# Zero-width characters come along when copying from web pages and would split an ARN invisibly.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))

_NAME = re.compile(arns.IAM_NAME)
_ACTION = re.compile(
    r"\s*+(?P<service>[A-Za-z0-9][A-Za-z0-9-]{0,63}+)\s*+:\s*+(?P<name>[A-Za-z0-9*]{1,128}+)"
)
# An ARN as pasted: whitespace is tolerated only next to ':' or '/', which is where documentation pages and
# terminals wrap it ("arn:aws\n:iam::123456789012\n:user/marymajor"). A real ARN never contains whitespace.
_ARN_TEXT = r"arn(?:\s{0,4}+[:/]\s{0,4}+[^\s:/\"'`\\,]{0,2000}+)++"
_RESOURCE = re.compile(
    r"\s++on\s++resource\s*+:\s*+[\"']?(?P<resource>" + _ARN_TEXT + r"|[^\s\"'`\\]{1,2000}+)", re.IGNORECASE
)
# IAM names its own resources by kind and name ("on resource: role CodePipelineServiceRole", "user marymajor",
# "policy arn:aws:iam::aws:policy/X"); read only after an iam: action, where a pipeline cannot be meant.
_IAM_SHORT_RESOURCE = re.compile(
    r"\s++on\s++resource\s*+:\s*+[\"']?(?P<kind>role|user|group|policy)\s++(?P<resource>"
    + _ARN_TEXT
    + r"|[\w+=,.@/-]{1,1000}+)",
    re.IGNORECASE,
)
# A piece a terminal's line wrap split off the end of a resource: it starts the next line and is followed only
# by the end of that line or by the reason AWS gives. A real ARN never contains whitespace.
_WRAPPED_PIECE = re.compile(r"[ \t]*+\r?\n[ \t]*+(?P<piece>[\w+=,.@:/-]{1,1000}+)")
_LINE_END = re.compile(r"[ \t]*+(?:\r?\n|$)")
_MAX_WRAPPED_PIECES = 3
_SHOWN_CHARS = 200  # of the line where a resource looks cut: an IAM ARN with a short path fits whole
_POLICY_TYPE = (
    r"identity-based|resource-based|service\s++control|resource\s++control|permissions\s++boundary"
    r"|session|VPC\s++endpoint|[A-Za-z][A-Za-z -]{0,40}?(?=\s++polic)"
)
_REASON = re.compile(
    r"[\s,]*+(?:because\s++no\s++(?P<itype>" + _POLICY_TYPE + r")"
    r"|with\s++an?\s++explicit\s++deny\s++in\s++an?\s++(?P<etype>" + _POLICY_TYPE + r")"
    r"(?:\s++policy)?(?:\s*+:\s*+(?P<policy_arn>" + _ARN_TEXT + r"))?)",
    re.IGNORECASE,
)
_CLI_WRAPPER = re.compile(
    r"An\s++error\s++occurred\s*+\((?P<code>[\w.:-]{1,64}+)\)\s*+when\s++calling\s++the\s++"
    r"(?P<operation>\w{1,64}+)\s++operation"
)
# SDK JSON bodies ("__type": "...#AccessDeniedException") and S3 XML carry the code without the CLI wrapper.
_BARE_CODE = re.compile(r"\b(?P<code>(?:Client\.)?(?:AccessDenied|Unauthorized|AuthorizationError)\w{0,40}+)")
_TRAILING_PUNCTUATION = ".,;:)]}>"
_ESCAPES = (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"), ('\\"', '"'), ("\\'", "'"), ("\\/", "/"))

# Who can lift a deny that a grant cannot fix, by policy type.
_OWNERS = {
    "service control": "your AWS Organizations administrator, who owns the service control policy",
    "resource control": "your AWS Organizations administrator, who owns the resource control policy",
    "permissions boundary": "the IAM administrator who set the permissions boundary on {name}",
    "session": "whoever issues these credentials: the session policy is passed when the role is assumed",
    "identity-based": "the IAM administrator who attached the deny statement to {name}",
    "resource-based": "the owner of the resource, whose resource-based policy decides this",
    "vpc endpoint": "your network administrator, who owns the VPC endpoint policy",
}


@dataclass(frozen=True)
class ResourceText:
    """How the resource stood in the pasted text: enough to tell a wrapped ARN from a cut one.

    ``readings`` holds the resource as read, then joined with each piece a line break split off it (a terminal
    wraps inside words: ``…:role/service-`` ⏎ ``role/CodePipelineServiceRole``); only the catalog can say which
    one names something real.
    """

    readings: tuple[str, ...]
    line: int  # the line of the pasted text (from 1) on which the first reading ends
    on_line: (
        str  # the resource as it stands on that line ("…" when it began earlier), to show where it looks cut
    )
    ends_line: bool  # nothing followed the first reading on its line: a cut there would not show

    @property
    def wrapped(self) -> bool:
        return len(self.readings) > 1


@dataclass(frozen=True)
class Denial:
    """One AccessDenied message, reduced to what a grant decision needs."""

    principal_arn: str
    principal_type: str
    principal_name: str
    account_id: str
    partition: str
    session_name: str | None
    original_principal: str
    action: str
    service: str
    resource: str | None
    explicit_deny: bool
    policy_type: str | None
    policy_arn: str | None
    operation: str | None
    error_code: str | None
    resource_text: ResourceText | None = None

    @property
    def resource_readings(self) -> tuple[str, ...]:
        """The resource as read first, then each longer reading across the line breaks that followed it."""
        if self.resource_text is not None:
            return self.resource_text.readings
        return (self.resource,) if self.resource else ()

    @property
    def grantable(self) -> bool:
        """Whether a grant could lift this deny at all (whatever Gatehouse offers)."""
        # An explicit deny always wins over any allow. An implicit deny from an SCP, RCP, permissions
        # boundary, session or resource policy is a ceiling that an identity-based grant cannot raise either.
        # Only IAM users and roles can receive a grant (not root, not federated-user sessions).
        return (
            not self.explicit_deny
            and self.policy_type in (None, "identity-based")
            and self.principal_type in ("user", "role")
        )

    @property
    def action_problem(self) -> str | None:
        """Why Gatehouse cannot offer a grant of this action, or None when it can: it grants CodePipeline
        actions that exist, and passing a role to CodePipeline; nothing else."""
        service, _, name = self.action.partition(":")
        if self.action.lower() == "iam:passrole":
            return None
        if service.lower() != "codepipeline":
            return (
                f"{self.action} is an action of {service}, which Gatehouse does not grant: it hands out "
                "CodePipeline actions and passing roles to CodePipeline. Ask your platform team for other "
                "services."
            )
        if canonical_action(self.action) is None:
            known = codepipeline_action_names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = f" Did you mean codepipeline:{close[0]}?" if close else ""
            return f"{self.action} is not an action AWS defines for CodePipeline.{hint}"
        return None

    @property
    def fixable(self) -> bool:
        """Whether Gatehouse can propose a request that fixes this (``explanation`` says why not)."""
        return self.grantable and self.action_problem is None

    @property
    def explanation(self) -> str:
        target = f"{self.action} on {self.resource}" if self.resource else self.action
        if self.fixable:
            who = f"{self.principal_type} {self.principal_name}"
            if self.session_name:
                who += f" (session {self.session_name})"
            return (
                f"The {who} in account {self.account_id} is not allowed to call {target}. "
                f"A grant to {self.principal_arn} can fix this."
            )
        if self.grantable:
            return str(self.action_problem)
        label = _policy_label(self.policy_type or "")
        owner = _OWNERS.get(self.policy_type or "", "your AWS administrator").format(name=self.principal_arn)
        if self.explicit_deny:
            named = f" ({self.policy_arn})" if self.policy_arn else ""
            return (
                f"An explicit deny in {_article(label)} {label}{named} blocks {target}, and no grant can "
                f"override an explicit deny. Contact {owner}."
            )
        if self.principal_type not in ("user", "role"):
            return (
                f"Gatehouse can only grant to IAM users and roles, and {self.original_principal} is a "
                f"{self.principal_type}; ask your AWS administrator about {target}."
            )
        return (
            f"No {label} allows {target}, so a grant to {self.principal_name} would not help. "
            f"Contact {owner}."
        )


@dataclass(frozen=True)
class IntakeResult:
    """Either a parsed denial or a sentence telling the user what to paste instead."""

    denial: Denial | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.denial is not None


@dataclass(frozen=True)
class ResourceRef:
    """A CodePipeline resource: a pipeline, or one of its stages or actions. Bare names carry no region."""

    region: str | None
    account_id: str | None
    pipeline: str
    stage: str | None
    action: str | None


_PIPELINE_NAME = r"[A-Za-z0-9.@_-]{1,100}"
_PIPELINE_ARN = re.compile(
    rf"arn:{arns.PARTITION}:codepipeline:(?P<region>{arns.REGION}):(?P<account>{arns.ACCOUNT}):"
    rf"(?P<pipeline>{_PIPELINE_NAME})(?:/(?P<stage>{_PIPELINE_NAME})(?:/(?P<action>{_PIPELINE_NAME}))?)?"
)


def parse_pipeline_resource(resource: str | None) -> ResourceRef | None:
    """Read a pipeline/stage/action ARN or a bare pipeline name (as the console reports it); else None."""
    if not resource:
        return None
    resource = resource.strip()
    if re.fullmatch(_PIPELINE_NAME, resource):
        return ResourceRef(region=None, account_id=None, pipeline=resource, stage=None, action=None)
    match = _PIPELINE_ARN.fullmatch(resource)
    if match is None:
        return None
    return ResourceRef(
        region=match["region"],
        account_id=match["account"],
        pipeline=match["pipeline"],
        stage=match["stage"],
        action=match["action"],
    )


def parse_access_denied(text: str) -> IntakeResult:
    """Parse pasted text into a Denial, or explain what was expected. Never raises for a str."""
    if len(text) > MAX_MESSAGE_CHARS:
        return IntakeResult(denial=None, error=TOO_LONG)
    text = _unescape(text)
    first_error: str | None = None
    # Log output can hold several messages, or junk that happens to contain the anchor: take the first that
    # parses, but report the error of the first attempt since it is usually the one the user meant.
    for anchor in islice(_ANCHOR.finditer(text), _MAX_ATTEMPTS):
        denial, error = _parse_at(text, anchor.start(), anchor.end())
        if denial is not None:
            return IntakeResult(denial=denial, error=None)
        first_error = first_error or error
    return IntakeResult(denial=None, error=first_error or EXPECTED)


def _unescape(text: str) -> str:
    # Messages copied out of JSON logs or Python reprs keep their escapes; "\\n" between ARN segments must
    # become real whitespace so the ARN rules below can drop it.
    text = text.translate(_INVISIBLE)
    if "\\" not in text:
        return text
    text = re.sub(r"\\{2,}+", r"\\", text)
    for escaped, plain in _ESCAPES:
        text = text.replace(escaped, plain)
    return text


class _Principal(NamedTuple):
    arn: str
    type: str
    name: str
    account_id: str
    partition: str
    session_name: str | None


def _parse_at(text: str, start: int, end: int) -> tuple[Denial | None, str | None]:
    window_start = max(0, start - _PRINCIPAL_WINDOW)
    label = _last_match(_USER_LABEL, text, window_start, start)
    if label is not None:
        message_start, principal_start = label.start(), label.end()
    else:
        # Some tools print the ARN without the "User:" label; fall back to the nearest ARN before the anchor.
        message_start = principal_start = text.rfind("arn:", window_start, start)
        if principal_start < 0:
            return None, EXPECTED
    original = _WHITESPACE.sub("", text[principal_start:start]).strip("\"'`")
    principal = _parse_principal(original)
    if principal is None:
        kinds = "an IAM user, role, assumed-role, federated-user or root ARN"
        return None, f"'{original[:200]}' is not {kinds}. {EXPECTED}"

    tail_end = min(len(text), end + _TAIL_WINDOW)
    action = _ACTION.match(text, end, tail_end)
    if action is None:
        return None, (
            "Expected an action such as 'codepipeline:GetPipeline' after 'is not authorized to perform:'."
        )
    service = action["service"].lower()
    typed = f"{service}:{action['name']}"
    position = action.end()
    resource_text, resource, position = _resource(text, position, tail_end, principal, iam=service == "iam")

    explicit_deny, policy_type, policy_arn = False, None, None
    if reason := _REASON.match(text, position, tail_end):
        explicit_deny = reason["etype"] is not None
        policy_type = _WHITESPACE.sub(" ", reason["etype"] or reason["itype"]).lower()
        if reason["policy_arn"]:
            policy_arn = _WHITESPACE.sub("", reason["policy_arn"]).rstrip(_TRAILING_PUNCTUATION)

    error_code, operation = _wrapper(text, max(0, message_start - _WRAPPER_WINDOW), message_start)
    return (
        Denial(
            principal_arn=principal.arn,
            principal_type=principal.type,
            principal_name=principal.name,
            account_id=principal.account_id,
            partition=principal.partition,
            session_name=principal.session_name,
            original_principal=original,
            # The catalog's spelling, whatever the case AWS or the user wrote ("CODEPIPELINE:getpipeline").
            action=canonical_action(typed) or typed,
            service=service,
            resource=resource,
            explicit_deny=explicit_deny,
            policy_type=policy_type,
            policy_arn=policy_arn,
            operation=operation,
            error_code=error_code,
            resource_text=resource_text,
        ),
        None,
    )


def _resource(
    text: str, position: int, end: int, principal: _Principal, *, iam: bool
) -> tuple[ResourceText | None, str | None, int]:
    """Read ``on resource: …`` at ``position``: how it stood, the likeliest reading, and where the text after it
    starts."""
    kind = None
    match = _IAM_SHORT_RESOURCE.match(text, position, end) if iam else None
    if match is not None:
        kind = match["kind"].lower()
    else:
        match = _RESOURCE.match(text, position, end)
    if match is None:
        return None, None, position
    pieces = [match["resource"]]
    position = match.end()
    # Join what a line wrap split off, as long as each piece fills the start of its line up to its end or up
    # to the reason; anything else on that line means the resource had ended.
    for _ in range(_MAX_WRAPPED_PIECES):
        if _REASON.match(text, position, end):
            break
        piece = _WRAPPED_PIECE.match(text, position, end)
        if piece is None:
            break
        after = piece.end()
        if not (_LINE_END.match(text, after, end) or _REASON.match(text, after, end)):
            break
        pieces.append(piece["piece"])
        position = after
    readings: list[str] = []
    for count in range(1, len(pieces) + 1):
        reading = _WHITESPACE.sub("", "".join(pieces[:count])).rstrip(_TRAILING_PUNCTUATION)
        if kind is not None and reading and not reading.startswith("arn:"):
            reading = arns.iam_arn(
                partition=principal.partition, account=principal.account_id, kind=kind, name=reading
            )
        if reading and reading not in readings:
            readings.append(reading)
    if not readings:
        return None, None, position
    # AWS puts nothing between the resource and its reason, so pieces that run up to the reason are the rest of
    # the ARN; without a reason after them, the catalog decides (``resolve``) and the first reading stands.
    likeliest = readings[-1] if len(pieces) > 1 and _REASON.match(text, position, end) else readings[0]
    resource_start, first_end = match.start("kind" if kind else "resource"), match.end()
    shown_from = max(text.rfind("\n", 0, first_end) + 1, resource_start, first_end - _SHOWN_CHARS)
    return (
        ResourceText(
            readings=tuple(readings),
            line=text.count("\n", 0, first_end) + 1,
            on_line=("…" if shown_from > resource_start else "") + text[shown_from:first_end].strip(),
            ends_line=_LINE_END.match(text, first_end, len(text)) is not None,
        ),
        likeliest,
        position,
    )


def _parse_principal(arn: str) -> _Principal | None:
    parsed = arns.parse(arn)
    if parsed is None or parsed.service not in ("iam", "sts") or parsed.region or not arns.account_of(arn):
        return None
    partition, service, account, rest = parsed.partition, parsed.service, parsed.account, parsed.resource
    kind, _, path = rest.partition("/")
    parts = path.split("/")
    name, session = parts[-1], None
    if service == "iam" and rest == "root":
        kind, name = "root", "root"
    elif service == "iam" and kind in ("user", "role") and all(parts):
        pass  # user/dev/NAME: the path is part of the ARN but not of the name.
    elif service == "sts" and kind == "federated-user" and len(parts) == 1:
        pass
    elif service == "sts" and kind == "assumed-role" and len(parts) == 2:
        # STS reports the session, not the role, and drops the role's path: the role ARN we rebuild has no
        # path, which IAM still resolves by name (GetRole takes the name only).
        name, session = parts
        kind, arn = "role", f"arn:{partition}:iam::{account}:role/{name}"
    else:
        return None
    if not _NAME.fullmatch(name) or (session is not None and not _NAME.fullmatch(session)):
        return None
    return _Principal(arn, kind, name, account, partition, session)


def _wrapper(text: str, start: int, end: int) -> tuple[str | None, str | None]:
    """Return (error code, CLI operation) from the wrapper nearest before the message, if any."""
    if wrapper := _last_match(_CLI_WRAPPER, text, start, end):
        return wrapper["code"], wrapper["operation"]
    code = _last_match(_BARE_CODE, text, start, end)
    return (code["code"] if code else None), None


def _last_match(pattern: re.Pattern[str], text: str, start: int, end: int) -> re.Match[str] | None:
    # Callers pass bounded windows, so collecting every match stays cheap.
    matches = list(pattern.finditer(text, start, end))
    return matches[-1] if matches else None


def _policy_label(policy_type: str) -> str:
    label = policy_type.replace("vpc", "VPC")
    return label if label.endswith("boundary") else f"{label} policy"


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"
