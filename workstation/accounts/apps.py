from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "workstation.accounts"
    label = "accounts"
    verbose_name = "Accounts, roles and API clients"

    def ready(self) -> None:
        from workstation import checks  # noqa: F401  (registers system checks)
        from workstation.accounts import backends  # noqa: F401  (lockout signal receivers)
        from workstation.api import schema  # noqa: F401  (registers OpenAPI extensions)
