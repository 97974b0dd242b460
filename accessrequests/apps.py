from django.apps import AppConfig


class AccessRequestsConfig(AppConfig):
    name = "accessrequests"
    verbose_name = "Access requests"
    default_auto_field = "django.db.models.BigAutoField"
