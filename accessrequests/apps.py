from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    name = "accessrequests"
    verbose_name = "Access requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accessrequests.authz import used_codes
        from accessrequests.identity import signals  # noqa: F401  (connects the audit receivers)

        used_codes.install()  # a TOTP code counts once, recorded in the database (not the cache)
