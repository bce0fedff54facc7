"""Consumer credits: balances and ledger, grants from the client's server."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.api.authentication import consumer_principal
from workstation.api.headers import IDEMPOTENCY_HEADER, JOB_HEADERS, idempotency_key
from workstation.api.permissions import IsConsumer
from workstation.api.scoping import consumer_owned
from workstation.errors import InvalidInput

from . import services
from .models import CreditEntry, CreditType


class GrantSerializer(serializers.Serializer):
    credit_type = serializers.ChoiceField(choices=CreditType.choices)
    amount = serializers.IntegerField(min_value=1, max_value=10_000)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class CreditEntrySerializer(serializers.ModelSerializer):
    job = serializers.UUIDField(source="job_id", allow_null=True)
    avatar = serializers.UUIDField(source="avatar_id", allow_null=True)

    class Meta:
        model = CreditEntry
        fields = ["id", "credit_type", "amount", "reason", "note", "job", "avatar", "created_at"]
        read_only_fields = fields


class CreditsView(APIView):
    permission_classes = [IsConsumer]

    @extend_schema(summary="Balances and the ledger", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        principal = consumer_principal(request)
        entries = consumer_owned(CreditEntry).owned_by(principal)[:100]
        return Response(
            {
                "balances": services.balances(end_user=principal.existing_end_user()),
                "entries": CreditEntrySerializer(entries, many=True).data,
            }
        )


class GrantView(APIView):
    permission_classes = [IsConsumer]

    @extend_schema(
        summary="Grant credits (from the client's server; Idempotency-Key required)",
        request=GrantSerializer,
        parameters=JOB_HEADERS[:1],
        responses={201: CreditEntrySerializer, 200: CreditEntrySerializer},
    )
    def post(self, request):
        key = idempotency_key(request)
        if not key:
            raise InvalidInput({IDEMPOTENCY_HEADER: ["Grants need an Idempotency-Key header."]})
        data = GrantSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entry, created = services.grant(
            end_user=request.user.end_user, idempotency_key=key, **data.validated_data
        )
        return Response(
            CreditEntrySerializer(entry).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
