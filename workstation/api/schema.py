"""OpenAPI descriptions of our authentication schemes (loaded by the accounts app), and the
schema class that declares the X-End-User header on every consumer operation."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from .permissions import IsConsumer

END_USER_PARAMETER = OpenApiParameter(
    "X-End-User",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="Your opaque reference for the end user this call acts for (1-128 letters, "
    "digits and . _ : @ -). Missing: 400 naming the header.",
)


class WorkstationAutoSchema(AutoSchema):
    """Adds the X-End-User header parameter to operations that act for an end user (views
    whose permissions include `IsConsumer`), so Swagger's "Try it out" and generated clients
    send it."""

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        permissions = getattr(self.view, "permission_classes", ())
        if any(isinstance(p, type) and issubclass(p, IsConsumer) for p in permissions):
            parameters.append(END_USER_PARAMETER)
        return parameters


class ApiClientScheme(OpenApiAuthenticationExtension):
    target_class = "workstation.api.authentication.ApiClientAuthentication"
    name = "apiClientKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Consumer API client key. Consumer endpoints also need the "
            "X-End-User header naming the end user the call acts for.",
        }


class StudioSessionScheme(OpenApiAuthenticationExtension):
    target_class = "workstation.api.authentication.StudioSessionAuthentication"
    name = "studioSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "Studio session (POST /api/v1/auth/login); unsafe methods "
            "need the X-CSRFToken header.",
        }
