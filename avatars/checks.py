from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def check_personal_data_configuration(app_configs, **kwargs):
    problems: list[CheckMessage] = []
    if not settings.DATA_MASTER_KEYS_FROM_ENVIRONMENT:
        problems.append(
            Error(
                "DATA_MASTER_KEYS is not set in the environment (the embedded key under var/ is "
                "for local runs only).",
                id="avatars.E001",
            )
        )
    if settings.CONTENT_SAFETY_CHECKER == "none":
        problems.append(
            Warning(
                "No content-safety checker is configured (CONTENT_SAFETY_CHECKER=none): uploads "
                "and outputs are not screened.",
                id="avatars.W001",
            )
        )
    return problems
