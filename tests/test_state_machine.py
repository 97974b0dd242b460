"""The state machines of requests and grants: every transition in the tables works, every other one is refused
(by ``transition``), a plain ``update(status=...)`` is refused, and rows that break a status's promises are
refused by the database itself."""

from __future__ import annotations

import itertools

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accessrequests.models import (
    ENDED_GRANT_STATUSES,
    GRANT_TRANSITIONS,
    REQUEST_TRANSITIONS,
    AccessRequest,
    Grant,
    GrantStatus,
    RequestStatus,
    TransitionError,
)
from accessrequests.provisioning.grants import grant_create
from tests.factories import World, force_update

pytestmark = pytest.mark.django_db


def _grant_fields(status: str) -> dict:
    """What a grant in ``status`` must also hold (the database's check constraints say so)."""
    fields: dict = {"status": status, "ending": "", "revoked_at": None}
    if status == GrantStatus.ACTIVE:
        fields["applied_at"] = timezone.now()
    if status == GrantStatus.REVOKING:
        fields["ending"] = GrantStatus.REVOKED
    if status in ENDED_GRANT_STATUSES:
        fields.update(ending=status, revoked_at=timezone.now())
    return fields


def _request_fields(status: str) -> dict:
    return {"status": status, "decided_at": None if status == RequestStatus.PENDING else timezone.now()}


@pytest.fixture
def world():
    return World()


def _a_grant(world) -> Grant:
    req = world.submit()
    force_update(AccessRequest.objects.filter(pk=req.pk), **_request_fields(RequestStatus.APPROVED))
    req.refresh_from_db()
    return grant_create(request=req)


GRANT_PAIRS = list(itertools.product(GrantStatus.values, repeat=2))
REQUEST_PAIRS = list(itertools.product(RequestStatus.values, repeat=2))


def test_the_tables_name_every_status_and_only_real_ones():
    assert set(GRANT_TRANSITIONS) == set(GrantStatus.values)
    assert set().union(*GRANT_TRANSITIONS.values()) <= set(GrantStatus.values)
    assert set(REQUEST_TRANSITIONS) == set(RequestStatus.values)
    assert set().union(*REQUEST_TRANSITIONS.values()) <= set(RequestStatus.values)
    # Ended grants and decided requests never move again.
    assert all(not GRANT_TRANSITIONS[s] for s in ENDED_GRANT_STATUSES)
    assert all(not REQUEST_TRANSITIONS[s] for s in RequestStatus.values if s != RequestStatus.PENDING)


@pytest.mark.parametrize(("source", "target"), GRANT_PAIRS, ids=[f"{a}->{b}" for a, b in GRANT_PAIRS])
def test_each_grant_transition_is_allowed_exactly_when_the_table_says(world, source, target):
    grant = _a_grant(world)
    force_update(Grant.objects.filter(pk=grant.pk), **_grant_fields(source))
    target_fields = {k: v for k, v in _grant_fields(target).items() if k != "status"}
    if target in GRANT_TRANSITIONS[source]:
        assert Grant.objects.transition(grant.pk, sources=[source], target=target, **target_fields)
        grant.refresh_from_db()
        assert grant.status == target
    else:
        with pytest.raises(TransitionError):
            Grant.objects.transition(grant.pk, sources=[source], target=target, **target_fields)
        grant.refresh_from_db()
        assert grant.status == source


@pytest.mark.parametrize(("source", "target"), REQUEST_PAIRS, ids=[f"{a}->{b}" for a, b in REQUEST_PAIRS])
def test_each_request_transition_is_allowed_exactly_when_the_table_says(world, source, target):
    req = world.submit()
    force_update(AccessRequest.objects.filter(pk=req.pk), **_request_fields(source))
    decided = _request_fields(target)["decided_at"]
    if target in REQUEST_TRANSITIONS[source]:
        assert AccessRequest.objects.transition(req.pk, sources=[source], target=target, decided_at=decided)
        req.refresh_from_db()
        assert req.status == target
    else:
        with pytest.raises(TransitionError):
            AccessRequest.objects.transition(req.pk, sources=[source], target=target, decided_at=decided)
        req.refresh_from_db()
        assert req.status == source


def test_the_loser_of_a_race_moves_nothing(world):
    grant = _a_grant(world)
    assert Grant.objects.transition(grant.pk, sources=[GrantStatus.QUEUED], target=GrantStatus.APPLYING)
    assert not Grant.objects.transition(grant.pk, sources=[GrantStatus.QUEUED], target=GrantStatus.APPLYING)


def test_a_plain_status_update_is_refused(world):
    grant = _a_grant(world)
    with pytest.raises(TransitionError):
        Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.ACTIVE)
    with pytest.raises(TransitionError):
        AccessRequest.objects.filter(pk=grant.request_id).update(status=RequestStatus.DENIED)
    assert Grant.objects.filter(pk=grant.pk).update(last_error="noted") == 1  # other fields stay free


@pytest.mark.parametrize(
    "fields",
    [
        {"status": GrantStatus.ACTIVE, "applied_at": None},
        {"status": GrantStatus.REVOKING, "ending": ""},
        {"status": GrantStatus.REVOKED, "ending": GrantStatus.REVOKED, "revoked_at": None},
        {"status": GrantStatus.EXPIRED, "ending": GrantStatus.REVOKED, "revoked_at": timezone.now()},
        {"status": GrantStatus.QUEUED, "ending": GrantStatus.REVOKED},
        {"status": "lost"},
    ],
    ids=["active-never-applied", "leaving-without-ending", "ended-without-time", "ending-mismatch",
         "live-with-ending", "unknown-status"],
)  # fmt: skip
def test_the_database_refuses_a_grant_that_breaks_its_status(world, fields):
    grant = _a_grant(world)
    with pytest.raises(IntegrityError), transaction.atomic():
        force_update(Grant.objects.filter(pk=grant.pk), **fields)


def test_the_database_refuses_a_grant_that_ends_before_it_starts(world):
    grant = _a_grant(world)
    with pytest.raises(IntegrityError), transaction.atomic():
        Grant.objects.filter(pk=grant.pk).update(expires_at=grant.starts_at)


@pytest.mark.parametrize(
    "fields",
    [{"status": RequestStatus.APPROVED, "decided_at": None}, {"status": RequestStatus.PENDING, "decided_at": timezone.now()}, {"status": "maybe"}],
    ids=["decided-without-time", "pending-with-decision-time", "unknown-status"],
)  # fmt: skip
def test_the_database_refuses_a_request_that_breaks_its_status(world, fields):
    req = world.submit()
    with pytest.raises(IntegrityError), transaction.atomic():
        force_update(AccessRequest.objects.filter(pk=req.pk), **fields)
