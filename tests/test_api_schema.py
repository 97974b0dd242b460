"""schemathesis against the OpenAPI schema of a live test server: no 5xx, no response outside the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp, make_user
from tests.factories import World, fresh_factor, make_token

# Generated inputs per operation: enough to cover types, unknown fields and odd strings (NUL bytes included),
# bounded so the whole run stays well under a minute.
EXAMPLES = 40


@pytest.mark.django_db(transaction=True)
def test_the_api_has_no_server_errors_and_honours_its_schema(live_server):
    world = World()
    # A few requests and grants with small ids, so generated path ids reach real objects (and their handlers),
    # not only the 404 branch.
    for n in range(6):
        req = world.submit()
        if n % 2:
            request_approve(
                request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
            )
    # An admin who approves, not an auditor: an auditor's writes stop at 403 before any body is read, which
    # would leave every POST handler untested.
    boss = make_user("boss", "admins", "approvers")
    enable_totp(boss)
    _, raw = make_token(boss, "schemathesis")
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            response = case.call(base_url=f"{live_server.url}", headers=headers)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then fail once with all of them
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert failures == [], "\n\n".join(failures)
