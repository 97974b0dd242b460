"""The paste intake end to end on the moto demo world, its catalog synced from moto: what AWS really prints (any
case, IAM's short resources, the four partitions, ARNs a terminal wrapped) through the web form's paste flow and
the API's intake endpoint."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accessrequests.models import AccessRequest
from tests.provisioning_support import MANAGEMENT, PortalWorld
from tests.test_api import Api

pytestmark = [pytest.mark.moto, pytest.mark.django_db]

MARY = f"User: arn:aws:iam::{MANAGEMENT}:user/marymajor is not authorized to perform: "
MATEO = f"User: arn:aws:iam::{MANAGEMENT}:user/mateojackson is not authorized to perform: "
SERVICE_ROLE = f"arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServiceRole"
PARTITION_REGIONS = {
    "aws": "us-east-1",
    "aws-cn": "cn-north-1",
    "aws-us-gov": "us-gov-west-1",
    "aws-eusc": "eusc-de-east-1",
}
WRAPPED = {
    "after-a-hyphen": (
        "An error occurred (AccessDenied) when calling the CreatePipeline operation:\n"
        f"{MARY}iam:PassRole on resource: arn:aws:iam::{MANAGEMENT}:role/service-\nrole/CodePipelineServiceRole"
    ),
    "inside-the-name": (
        f"{MARY}iam:PassRole on resource: arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServi\n"
        "ceRole because no identity-based policy allows the iam:PassRole action"
    ),
}
CUT = (
    "An error occurred (AccessDenied) when calling the CreatePipeline operation:\n"
    f"{MARY}iam:PassRole on resource: arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServi\n"
)


@pytest.fixture
def world(demo_world):
    return PortalWorld(demo_world)


def paste(world, message: str) -> tuple[int, str]:
    client = Client()
    client.force_login(world.requester)
    response = client.post(reverse("paste_error"), {"message": message})
    return response.status_code, response.content.decode()


def intake(world, message: str) -> dict:
    response = Api(world.requester).post("intake/", {"message": message})
    assert response.status_code == 200, response.content
    return response.json()


def chosen_role(page: str) -> str | None:
    """The pk of the role the form's role select has chosen, if any."""
    select = page.split('name="pass_role"', 1)[1].split("</select>", 1)[0]
    found = re.search(r'<option value="(\d+)" selected>', select)
    return found[1] if found else None


def nothing_marked_wrong(page: str) -> bool:
    return "invalid-feedback" not in page and "alert-danger" not in page and "is-invalid" not in page


@pytest.mark.parametrize(
    "written", ["CODEPIPELINE:GetPipeline", "codepipeline:getpipeline", "CodePipeline:GETPIPELINE"]
)
def test_an_action_in_any_case_is_read_as_the_catalog_spells_it_on_the_web_and_in_the_api(world, written):
    message = f"{MATEO}{written} on resource: my-pipeline"

    status, page = paste(world, message)
    body = intake(world, message)

    assert status == 200 and 'data-testid="policy-preview"' in page
    assert "codepipeline:GetPipeline → smallest level: viewer" in page
    assert re.search(rf'name="pipelines" value="{world.pipeline.pk}"[^>]*checked', page)
    assert body["action"] == "codepipeline:GetPipeline" and body["fixable"] is True
    assert body["proposed_request"]["level"] == "viewer" and body["proposed_request"]["pipelines"] == [
        "my-pipeline"
    ]


def test_an_upper_case_iam_passrole_is_a_pass_role_request_for_the_named_role(world):
    message = f"{MARY}IAM:PassRole on resource: {SERVICE_ROLE}"

    status, page = paste(world, message)
    body = intake(world, message)

    role = world.role("CodePipelineServiceRole")
    assert status == 200 and chosen_role(page) == str(role.pk) and nothing_marked_wrong(page)
    assert body["action"] == "iam:PassRole" and body["proposed_request"]["kind"] == "pass_role"
    assert body["proposed_request"]["pass_role"] == SERVICE_ROLE


@pytest.mark.parametrize(
    ("resource", "read_as", "role"),
    [
        (
            "role CodePipelineDeployRole",
            f"arn:aws:iam::{MANAGEMENT}:role/CodePipelineDeployRole",
            "CodePipelineDeployRole",
        ),
        # IAM names a role without its path; the catalog's has /service-role/.
        (
            "role CodePipelineServiceRole",
            f"arn:aws:iam::{MANAGEMENT}:role/CodePipelineServiceRole",
            "CodePipelineServiceRole",
        ),
    ],
)
def test_iams_short_role_resource_is_the_role_of_that_name_in_the_principals_account(
    world, resource, read_as, role
):
    message = f"{MARY}iam:PassRole on resource: {resource}"

    status, page = paste(world, message)
    body = intake(world, message)

    expected = world.role(role)
    assert status == 200 and chosen_role(page) == str(expected.pk) and nothing_marked_wrong(page)
    assert 'data-testid="policy-preview"' in page and expected.arn in page
    assert body["resource"] == read_as and body["unmatched"] == []
    assert body["proposed_request"]["pass_role"] == expected.arn


def test_iams_short_user_resource_is_an_arn_in_the_principals_account_and_gatehouse_says_it_does_not_grant_it(
    world,
):
    message = f"{MARY}iam:CreateAccessKey on resource: user marymajor"

    status, page = paste(world, message)
    body = intake(world, message)

    assert body["resource"] == f"arn:aws:iam::{MANAGEMENT}:user/marymajor"
    assert body["action"] == "iam:CreateAccessKey" and body["fixable"] is False
    assert "an action of iam, which Gatehouse does not grant" in body["explanation"]
    assert status == 200 and "A grant cannot fix this" in page and 'name="justification"' not in page


@pytest.mark.parametrize("partition", list(PARTITION_REGIONS))
def test_each_partition_is_read_and_only_the_partition_of_the_catalog_is_matched(world, partition):
    region = PARTITION_REGIONS[partition]
    pipeline = f"arn:{partition}:codepipeline:{region}:{MANAGEMENT}:my-pipeline"
    message = (
        "An error occurred (AccessDeniedException) when calling the GetPipeline operation: User: "
        f"arn:{partition}:iam::{MANAGEMENT}:user/mateojackson is not authorized to perform: "
        f"CODEPIPELINE:GetPipeline on resource: {pipeline}"
    )

    status, page = paste(world, message)
    body = intake(world, message)

    assert body["principal_arn"] == f"arn:{partition}:iam::{MANAGEMENT}:user/mateojackson"
    assert (body["account_id"], body["action"], body["resource"]) == (
        MANAGEMENT,
        "codepipeline:GetPipeline",
        pipeline,
    )
    if partition == "aws":
        assert body["error"] is None and body["proposed_request"]["pipelines"] == ["my-pipeline"]
        assert status == 200 and 'data-testid="policy-preview"' in page
    else:
        refusal = (
            f"is in the {partition} partition, but Gatehouse manages account {MANAGEMENT} in aws, so this is "
            "another account"
        )
        assert refusal in body["error"] and body["proposed_request"] is None
        assert status == 400 and refusal in page and 'name="justification"' not in page


def test_an_assumed_role_of_each_partition_is_its_role(world):
    for partition in PARTITION_REGIONS:
        body = intake(
            world,
            f"User: arn:{partition}:sts::{MANAGEMENT}:assumed-role/AWSReservedSSO_Dev_0a1b/ana@example.com is not "
            "authorized to perform: codepipeline:ListPipelines",
        )
        assert body["principal_arn"] == f"arn:{partition}:iam::{MANAGEMENT}:role/AWSReservedSSO_Dev_0a1b"


@pytest.mark.parametrize("shape", list(WRAPPED))
def test_a_role_arn_a_terminal_wrapped_is_rejoined_on_the_web_and_in_the_api(world, shape):
    status, page = paste(world, WRAPPED[shape])
    body = intake(world, WRAPPED[shape])

    role = world.role("CodePipelineServiceRole")
    assert status == 200 and chosen_role(page) == str(role.pk) and nothing_marked_wrong(page)
    assert "sync the catalog" not in page and "seems cut" not in page
    assert body["resource"] == SERVICE_ROLE and body["unmatched"] == []
    assert body["proposed_request"]["pass_role"] == SERVICE_ROLE
    filed = Api(world.requester).post(
        "requests/", {"message": WRAPPED[shape], "justification": "new pipeline"}
    )
    assert filed.status_code == 201, filed.json()
    assert AccessRequest.objects.get().pass_role == role


def test_a_cut_role_arn_is_said_to_be_cut_at_its_line_and_nothing_is_marked_wrong_or_filed(world):
    status, page = paste(world, CUT)
    body = intake(world, CUT)

    assert status == 200 and "The role ARN seems cut at line 2:" in page and nothing_marked_wrong(page)
    assert chosen_role(page) is None and "sync the catalog" not in page
    [unmatched] = body["unmatched"]
    assert unmatched["what"] is None and "The role ARN seems cut at line 2:" in unmatched["why"]
    assert body["proposed_request"]["pass_role"] is None
    filed = Api(world.requester).post("requests/", {"message": CUT, "justification": "new pipeline"})
    assert filed.status_code == 400 and "seems cut at line 2" in str(filed.json())
    assert not AccessRequest.objects.exists()


def test_a_wrapped_arn_whose_joined_reading_names_no_role_is_said_to_be_cut_where_it_wraps(world):
    message = WRAPPED["inside-the-name"].replace("ceRole because", "ceRoleX because")

    status, page = paste(world, message)

    assert status == 200 and "The role ARN seems cut at line 1:" in page and nothing_marked_wrong(page)


def test_a_passrole_error_that_names_no_role_asks_for_it_without_marking_anything_wrong(world):
    status, page = paste(world, f"{MARY}iam:PassRole")

    assert status == 200 and "does not say which role was passed" in page and nothing_marked_wrong(page)
    assert "Choose the role to pass to CodePipeline" not in page


def test_a_role_of_another_account_is_never_taken_for_the_role_of_the_same_name_here(world):
    elsewhere = "arn:aws:iam::999988887777:role/service-role/CodePipelineServiceRole"

    status, page = paste(world, f"{MARY}iam:PassRole on resource: {elsewhere}")
    body = intake(world, f"{MARY}iam:PassRole on resource: {elsewhere}")

    assert status == 200 and chosen_role(page) is None and nothing_marked_wrong(page)
    assert f"{elsewhere}</code> is in account 999988887777" in page
    assert body["proposed_request"]["pass_role"] is None
    assert body["unmatched"] == [
        {
            "what": elsewhere,
            "why": f"is in account 999988887777, not beside arn:aws:iam::{MANAGEMENT}:user/marymajor; a role can "
            "only be passed in its own account. Choose a role of this account below.",
        }
    ]


def test_a_wrapped_pipeline_arn_is_rejoined_and_one_that_names_no_pipeline_is_said_to_be_cut(world):
    wrapped = f"{MATEO}codepipeline:GetPipeline on resource: arn:aws:codepipeline:us-east-1:{MANAGEMENT}:my-pipe\nline"

    status, page = paste(world, wrapped)
    body = intake(world, wrapped)

    assert status == 200 and re.search(rf'name="pipelines" value="{world.pipeline.pk}"[^>]*checked', page)
    assert body["resource"] == world.pipeline.arn and body["proposed_request"]["pipelines"] == ["my-pipeline"]
    cut = intake(world, wrapped.replace("\nline", "\nlinez"))
    assert "The name seems cut at line 1:" in cut["error"] and cut["proposed_request"] is None
