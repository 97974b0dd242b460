"""Rules that follow the organization: approval and eligibility rules name organizational units, account tags and
environments; one pure function decides which accounts a rule covers (routing, eligibility, the pickers, the plan),
and routing fails closed on an account whose environment is unknown."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accessrequests.authz import permissions, selectors
from accessrequests.authz import routing as rules
from accessrequests.core.scope import AccountFacts, AccountScope, RouteRule, covers, in_order, route
from accessrequests.governance.routing_plan import _route, situations
from accessrequests.governance.rules_file import Catalog, RuleSet, route_rules
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    EligibilityRule,
    Environment,
    OrganizationalUnit,
    RequestKind,
    RequestStatus,
)
from accessrequests.workflow.requests import RequestError
from tests.conftest import make_user
from tests.factories import World, make_account, make_pipeline, make_principal, make_rule

UNKNOWN = Environment.UNKNOWN


def facts(
    environment: str = "production", *, account_id: str = "111111111111", units=(), **tags
) -> AccountFacts:
    return AccountFacts(account_id=account_id, environment=environment, tags=tags, units=frozenset(units))


# --- the pure function ---------------------------------------------------------------------------------


def test_a_unit_covers_the_accounts_of_every_unit_below_it():
    scope = AccountScope.of(units=["ou-workloads"])
    deep = facts(units=["r-root", "ou-workloads", "ou-prod", "ou-payments"])
    beside = facts(units=["r-root", "ou-sandbox"])
    assert covers(scope, deep) and not covers(scope, beside)


def test_tags_match_when_every_key_listed_has_one_of_its_values():
    scope = AccountScope.of(tags={"team": ["payments", "billing"], "tier": ["1"]})
    assert covers(scope, facts(team="billing", tier="1", owner="x"))
    assert not covers(scope, facts(team="billing"))  # a key listed is missing
    assert not covers(scope, facts(team="ledger", tier="1"))  # a value not listed
    assert not covers(
        scope, facts(team="Payments", tier="1")
    )  # compared exactly, as Organizations holds them


def test_dimensions_add_up_with_and_and_values_within_one_with_or():
    scope = AccountScope.of(
        units=["ou-prod", "ou-shared"], tags={"team": ["payments"]}, environments=["production", "staging"]
    )
    right = {"units": ["ou-prod"], "team": "payments"}
    assert covers(scope, facts("production", **right))
    assert covers(scope, facts("staging", units=["ou-shared"], team="payments"))
    assert not covers(scope, facts("development", **right))  # environment outside the rule
    assert not covers(scope, facts("production", units=["ou-dev"], team="payments"))  # unit outside
    assert not covers(scope, facts("production", units=["ou-prod"], team="ledger"))  # tag outside
    by_id = AccountScope.of(accounts=["111111111111"], environments=["production"])
    assert covers(by_id, facts("production")) and not covers(by_id, facts("staging"))
    assert not covers(by_id, facts("production", account_id="222222222222"))


def test_a_rule_naming_nothing_covers_every_account_whose_environment_is_known_and_no_other():
    anything = AccountScope()
    assert all(covers(anything, facts(env)) for env in ("production", "staging", "development", "sandbox"))
    assert not covers(anything, facts(UNKNOWN))


def test_an_unknown_environment_is_routed_only_by_a_rule_that_names_the_account():
    unknown = facts(UNKNOWN, units=["r-root", "ou-payments"], team="payments")
    assert covers(AccountScope.of(accounts=["111111111111"]), unknown)
    assert covers(AccountScope.of(units=["ou-payments"]), unknown)
    assert covers(AccountScope.of(tags={"team": ["payments"]}), unknown)
    # Environment rules never: not even every environment at once, nor together with a unit that names it.
    every = ["production", "staging", "development", "sandbox"]
    assert not covers(AccountScope.of(environments=every), unknown)
    assert not covers(AccountScope.of(units=["ou-payments"], environments=every), unknown)


def test_for_eligibility_an_unknown_environment_counts_as_every_environment():
    production_only = AccountScope.of(environments=["production"])
    assert covers(production_only, facts(UNKNOWN), restriction=True)
    assert covers(AccountScope(), facts(UNKNOWN), restriction=True)
    assert not covers(production_only, facts("staging"), restriction=True)
    # The other dimensions still have to match.
    assert not covers(AccountScope.of(tags={"team": ["x"]}), facts(UNKNOWN), restriction=True)


def test_the_first_rule_in_priority_order_that_covers_the_request_routes_it():
    production = RouteRule("Production", 10, 2, AccountScope.of(environments=["production"]))
    passrole = RouteRule("PassRole", 20, 1, kinds=frozenset({RequestKind.PASS_ROLE}))
    catch_all = RouteRule("Everything", 90, 1)
    ordered = in_order([catch_all, passrole, production])
    assert route(ordered, facts("production"), kind=RequestKind.PASS_ROLE, level="") is production
    assert route(ordered, facts("staging"), kind=RequestKind.PASS_ROLE, level="") is passrole
    assert route(ordered, facts("staging"), kind=RequestKind.PIPELINE, level="viewer") is catch_all
    assert route(ordered, facts(UNKNOWN), kind=RequestKind.PIPELINE, level="viewer") is None


# --- on the database: routing, filing, eligibility -----------------------------------------------------


class Tree:
    """Root / Workloads / {Prod / Payments, Dev}, each with an account; and catch-all and production rules."""

    def __init__(self):
        self.world = World()
        self.world.rule.delete()
        unit = OrganizationalUnit.objects.create
        self.root = unit(ou_id="r-root", name="Root", path="Root")
        self.workloads = unit(ou_id="ou-work", name="Workloads", path="Root / Workloads", parent=self.root)
        self.prod = unit(ou_id="ou-prod", name="Prod", path="Root / Workloads / Prod", parent=self.workloads)
        self.payments = unit(
            ou_id="ou-pay", name="Payments", path="Root / Workloads / Prod / Payments", parent=self.prod
        )
        self.dev = unit(ou_id="ou-dev", name="Dev", path="Root / Workloads / Dev", parent=self.workloads)
        self.ledger = self.account(
            "222200000001", "ledger", Environment.PRODUCTION, self.payments, team="payments"
        )
        self.tools = self.account("222200000002", "tools", Environment.DEVELOPMENT, self.dev, team="platform")
        self.newcomer = self.account("222200000003", "newcomer", UNKNOWN, self.payments, team="payments")
        self.stray = self.account("222200000004", "stray", UNKNOWN, self.dev)
        self.catch_all = make_rule("Everything else", priority=900, approvals=1)
        self.production = make_rule("Production", priority=10, approvals=2, environments=["production"])

    def account(self, account_id, name, environment, ou, **tags):
        account = make_account(account_id, name, environment)
        account.ou, account.tags = ou, tags
        account.save()
        return account

    def route(self, account, kind=RequestKind.PIPELINE, level=AccessLevel.VIEWER):
        return rules.match_rule(account=account, kind=kind, level=level, pipelines=[])


@pytest.fixture
def tree(db):
    return Tree()


def test_a_rule_naming_a_unit_routes_accounts_in_the_units_below_it(tree):
    payments = make_rule("Payments", priority=5, approvals=3)
    payments.units.add(tree.prod)
    assert tree.route(tree.ledger) == payments  # in Prod / Payments, below Prod
    assert tree.route(tree.tools) == tree.catch_all  # in Dev: not below Prod
    # The sentence says so too.
    assert "accounts in Root / Workloads / Prod (or a unit below)" in payments.describe()


def test_a_rule_naming_tags_routes_the_accounts_that_carry_them(tree):
    team = make_rule("Payments team", priority=5, approvals=3, account_tags={"team": ["payments"]})
    assert tree.route(tree.ledger) == team
    assert tree.route(tree.tools) == tree.catch_all
    assert tree.route(tree.newcomer) == team  # unknown environment, but the rule names it by its tag


def test_an_account_with_no_environment_is_refused_with_the_reason_never_routed_to_the_catch_all(tree):
    principal = make_principal(tree.stray, users=[tree.world.requester])
    assert tree.route(tree.stray) is None
    with pytest.raises(RequestError) as refused:
        tree.world.submit(principal=principal, account=tree.stray, pipelines=[make_pipeline(tree.stray)])
    assert str(refused.value) == (
        "Account stray (222200000004) has no environment: tag it `environment=…` in Organizations (production "
        "or staging or development or sandbox), or ask a Gatehouse admin to set it. Until then no approval rule "
        "routes its requests."
    )
    # Once an admin sets it (the account has no environment tag), the catch-all routes it.
    AwsAccount.objects.filter(pk=tree.stray.pk).update(environment=Environment.SANDBOX)
    tree.stray.refresh_from_db()
    req = tree.world.submit(principal=principal, account=tree.stray, pipelines=[make_pipeline(tree.stray)])
    assert req.rule == tree.catch_all


def test_a_tag_naming_no_environment_is_refused_with_what_to_fix(tree):
    tree.stray.tags = {"environment": "qa"}
    tree.stray.save()
    principal = make_principal(tree.stray, users=[tree.world.requester])
    with pytest.raises(RequestError, match=r"its tag environment=qa in Organizations names none"):
        tree.world.submit(principal=principal, account=tree.stray, pipelines=[make_pipeline(tree.stray)])


def test_a_request_in_an_account_of_unknown_environment_is_never_approved_automatically(tree):
    explicit = make_rule("Newcomers", priority=1, auto_approve_low_risk=True)
    explicit.accounts.add(tree.newcomer, tree.tools)
    requester = tree.world.requester
    newcomer = tree.world.submit(
        principal=make_principal(tree.newcomer, users=[requester]),
        account=tree.newcomer,
        pipelines=[make_pipeline(tree.newcomer)],
    )
    tools = tree.world.submit(
        principal=make_principal(tree.tools, users=[requester]),
        account=tree.tools,
        pipelines=[make_pipeline(tree.tools)],
    )
    assert newcomer.rule == tools.rule == explicit
    assert (newcomer.status, tools.status) == (RequestStatus.PENDING, RequestStatus.APPROVED)


def eligibility(name, *, groups=("sre",), units=(), **fields) -> EligibilityRule:
    rule = EligibilityRule.objects.create(name=name, **fields)
    rule.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    rule.units.set(units)
    return rule


@pytest.mark.parametrize(
    ("dimension", "covered", "outside"),
    [
        ("unit", "ledger", "tools"),
        ("tag", "ledger", "tools"),
        ("environment", "ledger", "tools"),
    ],
)
def test_eligibility_rules_restrict_by_unit_tag_and_environment(tree, dimension, covered, outside):
    scope = {
        "unit": {"units": [tree.prod]},
        "tag": {"account_tags": {"team": ["payments"]}},
        "environment": {"environments": ["production"]},
    }[dimension]
    eligibility("Production people", **scope)
    someone, sre = make_user("someone"), make_user("sre-member", "sre")
    for account_name, restricted in ((covered, True), (outside, False)):
        account = getattr(tree, account_name)
        problem = permissions.eligibility_problem(someone, kind=RequestKind.PIPELINE, account=account)
        assert (problem is not None) is restricted, (dimension, account_name, problem)
        assert permissions.eligibility_problem(sre, kind=RequestKind.PIPELINE, account=account) is None
    problem = permissions.eligibility_problem(someone, kind=RequestKind.PIPELINE, account=tree.ledger)
    assert "the eligibility rule “Production people” allows only members of sre" in str(problem)


def test_for_eligibility_an_account_of_unknown_environment_is_in_every_environment(tree):
    eligibility("Production people", environments=["production"])
    someone = make_user("someone")
    assert permissions.eligibility_problem(someone, kind=RequestKind.PIPELINE, account=tree.stray)
    assert permissions.eligibility_problem(someone, kind=RequestKind.PIPELINE, account=tree.tools) is None


def test_the_review_picker_offers_the_accounts_the_approvers_rules_route(tree):
    approver = make_user("prod-approver", "prod-approvers")
    payments = make_rule("Payments", group="prod-approvers", priority=5)
    payments.units.add(tree.prod)
    assert set(selectors.reviewable_accounts(approver)) == {tree.ledger, tree.newcomer}
    # The catch-all's approvers: every account whose environment is known, never an unknown one.
    everyone = tree.world.approver
    assert set(selectors.reviewable_accounts(everyone)) == {
        a for a in AwsAccount.objects.all() if a.environment != UNKNOWN
    }


def test_routing_from_the_database_and_from_the_rules_file_agree_for_every_account_and_request(tree):
    """The filing (``rules.match_rule``, rules read from the database) and the plan (``governance.route_rules``,
    rules as specs) route alike: every account, kind, level, pipeline and permission-set risk."""
    team = make_rule("Payments team", priority=5, approvals=3, account_tags={"team": ["payments"]})
    team.units.add(tree.workloads)
    pipeline = make_pipeline(tree.ledger, "release")
    only_release = make_rule("Release", priority=1, kinds=[RequestKind.PIPELINE], levels=["operator"])
    only_release.pipelines.add(pipeline)
    make_rule(
        "Privileged", priority=2, kinds=[RequestKind.PERMISSION_SET], allow_privileged_permission_sets=True
    )
    make_rule("Off", priority=0, enabled=False)
    catalog = Catalog.load()
    specs = in_order(route_rules(RuleSet.from_database(catalog).approval.values(), catalog))
    by_id = {f.account_id: f for f in catalog.account_facts()}
    privileged = type("Set", (), {"is_privileged": True})()
    checked = 0
    for account in AwsAccount.objects.all():
        named = [pipeline.arn] if account == tree.ledger else []
        other = [make_pipeline(account, "other")]
        others = {RequestKind.PIPELINE: other, RequestKind.CROSS_ACCOUNT: other}
        for situation in situations(named):
            from_db = rules.match_rule(
                account=account,
                kind=situation.kind,
                level=situation.level,
                pipelines=[pipeline] if situation.pipeline else others.get(situation.kind, []),
                permission_set=privileged if situation.privileged else None,
            )
            from_file = _route(specs, by_id[account.account_id], situation)
            assert (from_db and from_db.name) == (from_file and from_file.name), (account, situation)
            checked += 1
    assert checked > 50
