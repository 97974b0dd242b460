from django.db import migrations, models


class Migration(migrations.Migration):
    """The review queue reads a reviewer's recent decisions from this index alone (``selectors.review_queue``)."""

    dependencies = [
        ("accessrequests", "0024_used_totp_codes"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="decision", name="decision_reviewer_created"),
        migrations.AddIndex(
            model_name="decision",
            index=models.Index(
                fields=["reviewer", "created_at"],
                include=["request"],
                name="decision_reviewer_recent",
            ),
        ),
    ]
