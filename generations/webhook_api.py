"""Consumer API for the client's webhook (an API client key; no X-End-User needed).

Included from generations/urls.py with `path("", include("generations.webhook_api"))`.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.api.permissions import IsApiClient

from . import webhooks


class WebhookSetSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=webhooks.URL_MAX_LENGTH, trim_whitespace=True)


_SETTINGS = inline_serializer(
    "WebhookSettings",
    {
        "url": serializers.URLField(),
        "secret": serializers.CharField(
            allow_null=True,
            help_text=(
                "Shown once, when generated (first set, after a delete, or on rotation); null when "
                "the existing secret is kept."
            ),
        ),
    },
)
_URL_ONLY = inline_serializer("WebhookUrl", {"url": serializers.URLField(allow_null=True)})


class WebhookView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        operation_id="webhook_get",
        summary="Your webhook URL (never the secret)",
        responses={200: _URL_ONLY},
    )
    def get(self, request):
        return Response({"url": request.user.client.webhook_url or None})

    @extend_schema(
        operation_id="webhook_set",
        summary="Set the webhook URL; the first time, a signing secret is returned once",
        request=WebhookSetSerializer,
        responses={200: _SETTINGS},
    )
    def put(self, request):
        data = WebhookSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = webhooks.webhook_set(client=request.user.client, url=data.validated_data["url"])
        return Response({"url": result.url, "secret": result.secret})

    @extend_schema(
        operation_id="webhook_delete",
        summary="Remove the webhook and its secret (pending events are dropped)",
        responses={204: None},
    )
    def delete(self, request):
        webhooks.webhook_clear(client=request.user.client)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        operation_id="webhook_rotate_secret",
        summary="A new signing secret, returned once (409 without a webhook)",
        request=None,
        responses={200: _SETTINGS},
    )
    def post(self, request):
        result = webhooks.webhook_rotate_secret(client=request.user.client)
        return Response({"url": result.url, "secret": result.secret})


urlpatterns = [
    path("webhook", WebhookView.as_view(), name="webhook"),
    path("webhook/rotate-secret", WebhookRotateSecretView.as_view(), name="webhook-rotate-secret"),
]
