"""An audit trail that proves it is complete.

- A gap-free sequence number on every audit event, so that a deleted event is a visible gap.
- AuditIntegrity: the outcome of the newest periodic verification (for the audit pages and /healthz).
(Principal.display_name, which the access report uses, comes with 0007_guarantees.)


Existing events are numbered 1, 2, 3, … in id order (the order they were chained in). Their hashes do not change:
the sequence number is not part of an event's hash. On PostgreSQL the append-only trigger (0004) is switched off
for this one UPDATE, inside the migration's transaction, and on again before it commits.
"""

from django.db import migrations, models

NUMBER = """
UPDATE accessrequests_auditevent SET seq = numbered.n
FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM accessrequests_auditevent) AS numbered
WHERE accessrequests_auditevent.id = numbered.id
"""


def number_existing(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE accessrequests_auditevent DISABLE TRIGGER gatehouse_audit_append_only"
            )
        cursor.execute(NUMBER)
        if vendor == "postgresql":
            cursor.execute("ALTER TABLE accessrequests_auditevent ENABLE TRIGGER gatehouse_audit_append_only")
            # The UPDATE queued deferred foreign-key checks; run them now so the ALTER TABLE below may follow.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [("accessrequests", "0007_guarantees")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.RunPython(number_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.PositiveBigIntegerField(
                help_text="Position in the chain: 1, 2, 3, … with no gaps (assigned under the chain's lock)."
            ),
        ),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["seq"]}),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("seq",), name="accessrequests_auditevent_unique_seq"),
        ),
        migrations.CreateModel(
            name="AuditIntegrity",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("checked_at", models.DateTimeField(blank=True, null=True)),
                ("ok", models.BooleanField(default=True)),
                ("broken_seq", models.PositiveBigIntegerField(blank=True, null=True)),
                ("reason", models.TextField(blank=True)),
                ("failing_since", models.DateTimeField(blank=True, null=True)),
                ("report", models.JSONField(blank=True, default=dict)),
            ],
            options={"verbose_name_plural": "audit integrity"},
        ),
    ]
