"""Operators' API: usage per API client and UTC day, so the platform can bill its partners.

Included from generations/urls.py with `path("", include("generations.usage_api"))`. It lives
in generations, the lowest layer that sees every metric (jobs, the credit ledger, avatar and
generation kinds).
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.api.permissions import IsOperator

from . import selectors


class UsageQuerySerializer(serializers.Serializer):
    since = serializers.DateField(
        required=False,
        input_formats=["%Y-%m-%d"],
        help_text="First UTC day, YYYY-MM-DD (default: 29 days before `until`)",
    )
    until = serializers.DateField(
        required=False,
        input_formats=["%Y-%m-%d"],
        help_text="Last UTC day, YYYY-MM-DD, included (default: today); at most 366 days in all",
    )


class RefundCreditsSerializer(serializers.Serializer):
    avatar = serializers.IntegerField(help_text="Avatar credits refunded")
    generation = serializers.IntegerField(help_text="Generation credits refunded")


class RefundUsageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Refund entries in the ledger")
    credits = RefundCreditsSerializer()


class UsageFiguresSerializer(serializers.Serializer):
    avatars_trained = serializers.IntegerField(help_text="Training jobs that succeeded")
    generations = serializers.IntegerField(help_text="Generation jobs that succeeded")
    refinements = serializers.IntegerField(help_text='"More like me" jobs that succeeded')
    gpu_seconds = serializers.FloatField(
        help_text="Sum of started -> finished of every finished job, whatever its outcome"
    )
    refunds = RefundUsageSerializer()


class UsageDaySerializer(UsageFiguresSerializer):
    date = serializers.DateField(source="day", help_text="The UTC day")


class ClientUsageSerializer(serializers.Serializer):
    client_id = serializers.IntegerField()
    client_name = serializers.CharField()
    totals = UsageFiguresSerializer(help_text="The window's totals")
    days = UsageDaySerializer(many=True, help_text="Days with any use, oldest first")


class UsageReportSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    clients = ClientUsageSerializer(many=True, help_text="Clients with any use in the window")


class UsageView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        operation_id="ops_usage",
        summary="Usage per API client and UTC day (avatars, generations, GPU-seconds, refunds)",
        parameters=[UsageQuerySerializer],
        responses={200: UsageReportSerializer},
    )
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = selectors.client_usage(
            since=query.validated_data.get("since"), until=query.validated_data.get("until")
        )
        return Response(UsageReportSerializer(report).data)


urlpatterns = [path("ops/usage", UsageView.as_view(), name="ops-usage")]
