from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    name = "accessrequests"
    verbose_name = "Access requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accessrequests.identity import signals  # noqa: F401  (connects the audit receivers)
