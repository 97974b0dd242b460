"""What Gatehouse itself created in AWS, so that it removes only that (DESIGN.md, "Security invariants")."""

from __future__ import annotations

from django.db import models

from accessrequests.models.principals import Principal


class ManagedAssignment(models.Model):
    """An Identity Center account assignment Gatehouse created, and so may delete.

    The row is written *before* ``CreateAccountAssignment`` is called: a worker killed between the call and the
    row would otherwise leave an assignment nobody owns, which revoke would then keep forever. An assignment
    that already existed when a grant asked for it (made by hand, or by another tool) never gets a row, so
    revoke, expiry and drift repair leave it alone.
    """

    principal = models.ForeignKey(Principal, on_delete=models.PROTECT, related_name="managed_assignments")
    account_id = models.CharField(max_length=12)
    permission_set_arn = models.CharField(max_length=2048)
    grant = models.ForeignKey(
        "Grant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The grant whose apply created it.",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["principal", "account_id", "permission_set_arn"],
                name="%(app_label)s_%(class)s_one_per_assignment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.permission_set_arn} for {self.principal} in {self.account_id}"
