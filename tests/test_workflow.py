"""The request workflow and the security invariants that touch requests."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections

from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    AuditEvent,
    Decision,
    Grant,
    GrantStatus,
    RequestKind,
    RequestStatus,
)
from accessrequests.policy import documents as policy
from accessrequests.workflow.requests import (
    RequestError,
    request_approve,
    request_cancel,
    request_deny,
)
from tests.conftest import make_user, passes_on_scratch_postgres
from tests.factories import World, fresh_factor, make_account, make_principal, make_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


def test_submitting_records_the_exact_statements_and_an_audit_event(world):
    req = world.submit()
    assert req.status == RequestStatus.PENDING
    assert req.rule == world.rule
    arns = {r for s in req.statements for r in s["Resource"]}
    assert "arn:aws:codepipeline:us-east-1:123456789012:my-pipeline" in arns
    assert AuditEvent.objects.filter(request_id=req.pk, action="request.created").count() == 1


def test_a_request_matching_no_rule_cannot_be_filed_and_says_who_to_contact(world):
    other = make_account("210987654321", "prod")
    principal = make_principal(other, users=[world.requester])
    from tests.factories import make_pipeline

    with pytest.raises(RequestError, match="No approval rule covers"):
        world.submit(account=other, principal=principal, pipelines=[make_pipeline(other)])
    assert AccessRequest.objects.count() == 0


def test_duration_is_bounded_by_the_rule(world):
    with pytest.raises(RequestError, match="between 1 and 8 hours"):
        world.submit(duration_hours=9)
    with pytest.raises(RequestError, match="Permanent access is not allowed"):
        world.submit(duration_hours=None)


def test_justification_is_required(world):
    with pytest.raises(RequestError, match="justification is required"):
        world.submit(justification="   ")


def test_sensitive_or_untrusting_roles_cannot_be_requested(world):
    sensitive = make_role(world.account, "BreakGlass", sensitive=True)
    untrusting = make_role(world.account, "LambdaExecutionRole", trusts=False)
    with pytest.raises(RequestError, match="sensitive"):
        world.submit(kind=RequestKind.PASS_ROLE, pass_role=sensitive, pipelines=[], level="")
    with pytest.raises(RequestError, match="does not trust codepipeline"):
        world.submit(kind=RequestKind.PASS_ROLE, pass_role=untrusting, pipelines=[], level="")


def test_pass_role_statements_carry_passed_to_service(world):
    req = world.submit(kind=RequestKind.PASS_ROLE, pass_role=world.role, pipelines=[], level="")
    [statement] = req.statements
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "codepipeline.amazonaws.com"}}
    assert statement["Resource"] == [world.role.arn]


def test_unknown_custom_actions_are_refused_with_their_name(world):
    with pytest.raises(RequestError, match="codepipeline:FlyToTheMoon"):
        world.submit(level=AccessLevel.CUSTOM, actions=["codepipeline:FlyToTheMoon"])


def test_nobody_approves_their_own_request(world):
    world.requester.groups.add(*world.approver.groups.all())
    req = world.submit()
    with pytest.raises(NotAllowed, match="your own request"):
        request_approve(
            request_id=req.pk, reviewer=world.requester, second_factor=fresh_factor(world.requester)
        )
    assert not Decision.objects.exists()


def test_not_even_an_admin_approves_their_own_request(world):
    admin = make_user("boss", "admins", "approvers", is_superuser=True, is_staff=True)
    principal = make_principal(world.account, "boss-user", users=[admin])
    req = world.submit(requester=admin, principal=principal)
    with pytest.raises(NotAllowed, match="your own request"):
        request_approve(request_id=req.pk, reviewer=admin, second_factor=fresh_factor(admin))


def test_nobody_approves_a_request_for_a_principal_linked_to_them(world):
    world.principal.users.add(world.approver)
    req = world.submit()
    with pytest.raises(NotAllowed, match="would reach you"):
        request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        )


def test_approvers_outside_the_rule_cannot_decide(world):
    req = world.submit()
    with pytest.raises(NotAllowed, match="do not cover"):
        request_approve(
            request_id=req.pk,
            reviewer=world.outsider_approver,
            second_factor=fresh_factor(world.outsider_approver),
        )


def test_n_approvals_means_n_distinct_people():
    world = World(approvals=2)
    req = world.submit()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING
    with pytest.raises(NotAllowed, match="already decided"):
        request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        )
    request_approve(request_id=req.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2))
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED
    assert Grant.objects.get(request=req).status == GrantStatus.QUEUED
    assert req.decisions.count() == 2


def test_deny_needs_a_comment_and_ends_the_request(world):
    req = world.submit()
    with pytest.raises(RequestError, match="Say why"):
        request_deny(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver), comment=""
        )
    request_deny(
        request_id=req.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="Use the read-only role",
    )
    req.refresh_from_db()
    assert req.status == RequestStatus.DENIED
    assert not Grant.objects.exists()


def test_only_the_requester_cancels_and_only_while_pending(world):
    req = world.submit()
    with pytest.raises(NotAllowed, match="Only the requester"):
        request_cancel(request_id=req.pk, requester=world.other_requester)
    request_cancel(request_id=req.pk, requester=world.requester)
    with pytest.raises(NotAllowed, match="only pending"):
        request_cancel(request_id=req.pk, requester=world.requester)
    with pytest.raises(NotAllowed, match="cancelled"):
        request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        )


def test_low_risk_requests_auto_approve_where_the_rule_says_so(world):
    world.rule.auto_approve_low_risk = True
    world.rule.save()
    req = world.submit()
    assert req.status == RequestStatus.APPROVED
    assert Grant.objects.filter(request=req).exists()
    operator = world.submit(level=AccessLevel.OPERATOR)
    assert operator.status == RequestStatus.PENDING


def test_generated_statements_never_use_star_for_resourceful_actions(world):
    for level in (AccessLevel.VIEWER, AccessLevel.OPERATOR, AccessLevel.EDITOR):
        req = world.submit(level=level)
        for statement in req.statements:
            if statement["Resource"] == ["*"] or statement["Resource"] == "*":
                assert all(
                    policy.resource_kind(a) == policy.ResourceKind.NONE
                    for a in policy.as_list(statement["Action"])
                )
            if "iam:PassRole" in statement["Action"]:
                assert (
                    statement["Condition"]["StringEquals"]["iam:PassedToService"]
                    == "codepipeline.amazonaws.com"
                )
        assert policy.check_document(policy.render(req.statements)) == []


def _race(*calls):
    """Run the calls at the same moment in threads; return what each returned or raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_a_double_clicked_approve_records_one_decision():
    world = World()
    req = world.submit()
    results = _race(
        lambda: request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        ),
        lambda: request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        ),
    )
    assert sum(isinstance(r, AccessRequest) for r in results) == 1
    assert sum(isinstance(r, (RequestError, NotAllowed)) for r in results) == 1
    assert Decision.objects.filter(request=req).count() == 1
    assert Grant.objects.filter(request=req).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_race_of_approve_and_cancel_leaves_exactly_one_outcome():
    world = World()
    for _ in range(5):
        req = world.submit()
        results = _race(
            lambda req=req: request_approve(
                request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
            ),
            lambda req=req: request_cancel(request_id=req.pk, requester=world.requester),
        )
        req.refresh_from_db()
        winners = [r for r in results if isinstance(r, AccessRequest)]
        assert len(winners) == 1, results
        assert req.status in (RequestStatus.APPROVED, RequestStatus.CANCELLED)
        assert Grant.objects.filter(request=req).exists() == (req.status == RequestStatus.APPROVED)


def test_requests_nobody_decided_expire_unreviewed_and_say_so(world):
    from datetime import timedelta

    from django.utils import timezone

    from accessrequests.workflow.requests import requests_expire_unreviewed

    old = world.submit()
    fresh = world.submit()
    AccessRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=80))
    assert requests_expire_unreviewed(older_than=timedelta(hours=72)) == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == RequestStatus.EXPIRED and fresh.status == RequestStatus.PENDING
    assert AuditEvent.objects.filter(request_id=old.pk, action="request.expired_unreviewed").exists()
    assert requests_expire_unreviewed(older_than=timedelta(hours=72)) == 0


def _row_is_locked(table: str, pk: int) -> bool:
    """Whether another transaction could not take the key-share lock a foreign key to this row needs (what
    inserting a request, decision or grant that refers to it takes), asked from a connection of its own."""
    import psycopg
    import psycopg.sql
    from django.db import connection

    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], password=s["PASSWORD"] or None,
        dbname=s["NAME"], autocommit=False,
    ) as other:  # fmt: skip
        try:
            other.execute(
                psycopg.sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR KEY SHARE NOWAIT").format(
                    psycopg.sql.Identifier(table)
                ),
                [pk],
            )
        except psycopg.errors.LockNotAvailable:
            return True
        return False


@pytest.mark.django_db(transaction=True)
def test_a_decision_locks_its_request_and_leaves_the_account_and_principal_rows_free(monkeypatch):
    """A decision holds its request's row until it commits, and waits for the audit chain's lock on the way. It
    must not hold its account's row too: a request being filed in the same account holds the chain's lock and
    needs a key-share lock on that row for its foreign key, and the two deadlocked under load."""
    from django.db import connection

    from accessrequests.audit import trail as audit

    if connection.vendor != "postgresql":
        # Row locks are PostgreSQL's (SQLite admits one writer at a time): on the embedded profile this test runs
        # again in a child process against a scratch PostgreSQL database, and passes only if it passes there.
        passes_on_scratch_postgres(
            f"{__file__}::test_a_decision_locks_its_request_and_leaves_the_account_and_principal_rows_free",
            "gatehouse_lock_test",
        )
        return
    world = World()
    req = world.submit()
    seen: dict[str, bool] = {}
    record = audit.record

    def record_and_look(**fields):
        if (
            fields["action"] == "request.approved"
        ):  # inside the decision's transaction, before the chain's lock
            seen["request"] = _row_is_locked("accessrequests_accessrequest", req.pk)
            seen["account"] = _row_is_locked("accessrequests_awsaccount", world.account.pk)
            seen["principal"] = _row_is_locked("accessrequests_principal", world.principal.pk)
        return record(**fields)

    monkeypatch.setattr(audit, "record", record_and_look)
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    assert seen == {"request": True, "account": False, "principal": False}
