"""On PostgreSQL, refuse UPDATE and DELETE on the audit table even from raw SQL.

TRUNCATE stays possible for the table owner (the test runner flushes with it); the application's database
role should not own the table in production.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION gatehouse_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS gatehouse_audit_append_only ON accessrequests_auditevent;
CREATE TRIGGER gatehouse_audit_append_only BEFORE UPDATE OR DELETE ON accessrequests_auditevent
    FOR EACH ROW EXECUTE FUNCTION gatehouse_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS gatehouse_audit_append_only ON accessrequests_auditevent;
DROP FUNCTION IF EXISTS gatehouse_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # None: the % in RAISE is not a placeholder


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("accessrequests", "0003_domain")]
    operations = [migrations.RunPython(forwards, backwards)]
