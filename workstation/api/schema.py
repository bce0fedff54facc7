"""OpenAPI descriptions of our authentication schemes (loaded by the accounts app)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
