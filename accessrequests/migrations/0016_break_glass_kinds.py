"""Break-glass gives only the kinds a rule names (``ApprovalRule.break_glass_kinds``); every rule that exists
keeps what break-glass meant before, pipeline access. Pending rule changes proposed before this migration carry
specs without the field: it is added to them, as the rule reads now, so their approval still finds the rule
unchanged and applies them. Requests can come from a Slack command too (``Source.SLACK``)."""

from django.db import migrations, models

import accessrequests.models.requests

PIPELINE_ONLY = ["pipeline"]


def keep_pipeline_only(apps, schema_editor):
    ApprovalRule = apps.get_model("accessrequests", "ApprovalRule")
    RuleChange = apps.get_model("accessrequests", "RuleChange")
    ApprovalRule.objects.update(break_glass_kinds=PIPELINE_ONLY)
    for change in RuleChange.objects.filter(target="approval_rule", status="pending"):
        for spec in (change.before, change.after):
            if spec is not None:
                spec.setdefault("break_glass_kinds", PIPELINE_ONLY)
        change.save(update_fields=["before", "after"])


class Migration(migrations.Migration):
    dependencies = [
        ("accessrequests", "0015_governed_changes"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalrule",
            name="break_glass_kinds",
            field=models.JSONField(
                blank=True,
                default=accessrequests.models.requests.pipeline_only,
                help_text="Request kinds break-glass may give under this rule; empty means pipeline access only.",
            ),
        ),
        migrations.AlterField(
            model_name="accessrequest",
            name="source",
            field=models.CharField(
                choices=[
                    ("form", "Web form"),
                    ("pasted_error", "Pasted error"),
                    ("api", "API"),
                    ("slack", "Slack command"),
                ],
                default="form",
                max_length=20,
            ),
        ),
        migrations.RunPython(keep_pipeline_only, migrations.RunPython.noop),
    ]
