"""Consumer API for consent, avatars, export and erasure; operator API for test avatars."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.events import job_topic
from jobs.streams import PositionWatch
from workstation.api.permissions import IsApiClient, IsOperator
from workstation.api.scoping import ConsumerScopedMixin
from workstation.api.sse import EventStreamView, event_stream

from . import consent as agreement
from . import services
from .audit import actor_of, audit
from .events import avatar_topic
from .models import Avatar, AvatarStatus, ConsentRecord, Identity, LoraStatus
from .selectors import (
    avatar_job_eta,
    avatar_queue_estimate,
    avatar_stage_estimates,
    avatar_waiting_job,
)

# --- Consent -------------------------------------------------------------------------------------


class ConsentItemSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="Stable in every language; send it back in `items`")
    title = serializers.CharField()
    text = serializers.CharField()


class ConsentDocumentSerializer(serializers.Serializer):
    version = serializers.CharField()
    language = serializers.ChoiceField(
        choices=agreement.LANGUAGES, help_text="The language shown, also in Content-Language"
    )
    hash = serializers.CharField(
        help_text="SHA-256 of this language version: send it back as `agreement_hash`"
    )
    items = ConsentItemSerializer(many=True)
    promises = serializers.ListField(child=serializers.CharField())
    age_confirmation = serializers.CharField()
    text = serializers.CharField(help_text="The whole agreement as one text: show it verbatim")


class ConsentCurrentView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        summary="The current consent agreement (show it verbatim)",
        description=(
            "English or Simplified Chinese by `Accept-Language` (zh, zh-CN, zh-Hans: Simplified "
            "Chinese; otherwise English). The answer names its language in `language` and the "
            "`Content-Language` header. Each language version has its own `hash`."
        ),
        parameters=[
            OpenApiParameter(
                "Accept-Language",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="e.g. `zh-CN`, `zh-Hans`, `en`; q-values are honoured",
            )
        ],
        responses={200: ConsentDocumentSerializer},
    )
    def get(self, request):
        language = agreement.language_for(request.headers.get("Accept-Language", ""))
        document = agreement.agreement_document(language)
        body = ConsentDocumentSerializer(
            {
                **document,
                "language": language,
                "hash": agreement.agreement_hash(document),
                "text": agreement.agreement_text(document),
            }
        ).data
        return Response(body, headers={"Content-Language": language, "Vary": "Accept-Language"})


class ConsentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "agreement_version",
            "agreement_hash",
            "language",
            "items",
            "age_confirmation",
            "created_at",
            "withdrawn_at",
        ]
        read_only_fields = fields


class ConsentCreateSerializer(serializers.Serializer):
    agreement_hash = serializers.CharField(max_length=64)
    items = serializers.ListField(child=serializers.CharField(max_length=64), allow_empty=False)
    age_confirmation = serializers.CharField(max_length=32)


class ConsentListCreateView(ConsumerScopedMixin, generics.ListAPIView):
    serializer_class = ConsentSerializer

    def scoped_queryset(self):
        return ConsentRecord.objects.all()

    @extend_schema(
        summary="Record the end user's consent",
        request=ConsentCreateSerializer,
        responses={201: ConsentSerializer},
    )
    def post(self, request):
        data = ConsentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        record = services.consent_give(principal=request.user, **data.validated_data)
        return Response(ConsentSerializer(record).data, status=status.HTTP_201_CREATED)


class ConsentWithdrawView(ConsumerScopedMixin, generics.GenericAPIView):
    serializer_class = ConsentSerializer

    def scoped_queryset(self):
        return ConsentRecord.objects.all()

    @extend_schema(summary="Withdraw consent; avatars made under it are erased", request=None)
    def post(self, request, pk):
        record = self.get_object()
        erased = services.consent_withdraw(principal=request.user, consent=record)
        record.refresh_from_db()
        return Response({**ConsentSerializer(record).data, "avatars_erased": erased})


# --- Avatars -------------------------------------------------------------------------------------


class PhotoIssueSerializer(serializers.Serializer):
    field = serializers.CharField(help_text='"front_photo" or "photos.<index in the upload>"')
    code = serializers.CharField(help_text="Stable reason code, e.g. no_face, image_too_large")
    reason = serializers.CharField(help_text="A sentence to show the end user")


class StageFailureSerializer(serializers.Serializer):
    code = serializers.CharField()
    reason = serializers.CharField()


class InstantStageSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["pending", "ready", "unavailable", "failed"],
        help_text="pending: photo checks and the identity embedding are under way; "
        "unavailable: this avatar has no instant tier (switched off or no identity adapter).",
    )
    ready_at = serializers.DateTimeField(allow_null=True)
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Until ready; null when not pending"
    )


class LoraStageSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=LoraStatus.choices)
    ready_at = serializers.DateTimeField(allow_null=True)
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Until ready; null when not coming"
    )
    failure = StageFailureSerializer(allow_null=True)


class AvatarStagesSerializer(serializers.Serializer):
    instant = InstantStageSerializer(help_text="The instant tier: usable seconds after upload")
    lora = LoraStageSerializer(help_text="The studio tier: the LoRA trained on the queue")


def _instant_status(avatar: Avatar) -> str:
    if avatar.has_instant_tier:
        return "ready"
    if avatar.status in (AvatarStatus.QUEUED, AvatarStatus.PREPARING):
        return "pending"
    return "failed" if avatar.status == AvatarStatus.FAILED else "unavailable"


class AvatarSerializer(serializers.ModelSerializer):
    photo_issues = PhotoIssueSerializer(
        many=True,
        read_only=True,
        help_text="Photos not used and why: found at upload (not an image, too large) or by "
        "screening at the start of training (no face, blurry, another person...).",
    )
    progress = serializers.SerializerMethodField()
    queue = serializers.SerializerMethodField()
    failure = serializers.SerializerMethodField()
    scheduled_deletion_at = serializers.SerializerMethodField()
    tier = serializers.SerializerMethodField()
    identities = serializers.SerializerMethodField()
    stages = serializers.SerializerMethodField()

    class Meta:
        model = Avatar
        fields = [
            "id",
            "name",
            "status",
            "tier",
            "identities",
            "stages",
            "lora_status",
            "instant_ready_at",
            "progress",
            "queue",
            "failure",
            "photo_count",
            "photo_issues",
            "created_at",
            "finished_at",
            "last_used_at",
            "scheduled_deletion_at",
            "deletion_notice_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["instant", "studio"], allow_null=True))
    def get_tier(self, avatar) -> str | None:
        """The best tier ready now: "studio" (LoRA), "instant" (identity adapter) or null."""
        return avatar.tier

    @extend_schema_field(
        serializers.ListField(child=serializers.ChoiceField(choices=Identity.choices))
    )
    def get_identities(self, avatar) -> list[str]:
        """What a generation may ask for as `identity` now, best (the default) first."""
        return avatar.available_identities()

    @extend_schema_field(AvatarStagesSerializer)
    def get_stages(self, avatar) -> dict:
        estimates = avatar_stage_estimates(avatar=avatar)
        lora_failure = (
            {"code": avatar.lora_failure_code, "reason": avatar.lora_failure_reason}
            if avatar.lora_failure_code
            else None
        )
        return {
            "instant": {
                "status": _instant_status(avatar),
                "ready_at": avatar.instant_ready_at,
                "eta_seconds": estimates.instant,
            },
            "lora": {
                "status": avatar.lora_status,
                "ready_at": avatar.lora_ready_at,
                "eta_seconds": estimates.lora,
                "failure": lora_failure,
            },
        }

    def get_progress(self, avatar) -> dict:
        return {"step": avatar.progress_step, "total": avatar.progress_total}

    def get_queue(self, avatar) -> dict | None:
        estimate = avatar_queue_estimate(avatar=avatar)
        if estimate is None:
            return None
        return {"position": estimate.position, "eta_seconds": estimate.eta_seconds}

    def get_failure(self, avatar) -> dict | None:
        if not avatar.failure_code:
            return None
        return {"code": avatar.failure_code, "reason": avatar.failure_reason}

    def get_scheduled_deletion_at(self, avatar) -> datetime | None:
        if avatar.is_test_avatar:
            return None
        return avatar.last_used_at + timedelta(days=settings.AVATAR_RETENTION_DAYS)


class AvatarCreateSerializer(serializers.Serializer):
    consent = serializers.UUIDField()
    front_photo = serializers.FileField()
    photos = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    name = serializers.CharField(max_length=80, required=False, allow_blank=True)
    train_lora = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Also train the LoRA (studio tier) after the instant tier. Default: the API "
        "client's setting (`train_lora_by_default`).",
    )


def _photo_files(request) -> list:
    return request.FILES.getlist("photos")


class AvatarListCreateView(ConsumerScopedMixin, generics.ListAPIView):
    serializer_class = AvatarSerializer
    parser_classes = [MultiPartParser, FormParser]

    def scoped_queryset(self):
        return Avatar.objects.filter(is_test_avatar=False)

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        audit(
            actor=actor_of(request.user),
            action="avatars_listed",
            object_type="avatar",
            purpose="end user's own request",
            end_user=request.user.existing_end_user(),
        )
        return response

    @extend_schema(
        summary="Upload photos and start making an avatar",
        request={"multipart/form-data": AvatarCreateSerializer},
        responses={202: AvatarSerializer},
    )
    def post(self, request):
        data = AvatarCreateSerializer(
            data={
                "consent": request.data.get("consent"),
                "front_photo": request.FILES.get("front_photo"),
                "photos": _photo_files(request),
                "name": request.data.get("name", ""),
                **(
                    {"train_lora": request.data.get("train_lora")}
                    if "train_lora" in request.data
                    else {}
                ),
            }
        )
        data.is_valid(raise_exception=True)
        avatar = services.avatar_create(
            principal=request.user,
            consent_id=data.validated_data["consent"],
            front=data.validated_data["front_photo"],
            photos=data.validated_data["photos"],
            name=data.validated_data.get("name", ""),
            train_lora=data.validated_data.get("train_lora"),
        )
        body = AvatarSerializer(avatar, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class AvatarDetailView(ConsumerScopedMixin, generics.RetrieveDestroyAPIView):
    serializer_class = AvatarSerializer

    def scoped_queryset(self):
        return Avatar.objects.filter(is_test_avatar=False)

    def retrieve(self, request, *args, **kwargs):
        response = super().retrieve(request, *args, **kwargs)
        audit(
            actor=actor_of(request.user),
            action="avatar_read",
            object_type="avatar",
            object_id=kwargs["pk"],
            purpose="end user's own request",
            end_user=request.user.existing_end_user(),
        )
        return response

    def perform_destroy(self, instance):
        services.avatar_erase(
            avatar=instance,
            actor=actor_of(self.request.user),
            purpose="end user's deletion request",
        )


class AvatarEventsView(EventStreamView, ConsumerScopedMixin, generics.GenericAPIView):
    serializer_class = AvatarSerializer

    def scoped_queryset(self):
        return Avatar.objects.filter(is_test_avatar=False)

    @extend_schema(
        summary="The avatar's progress as server-sent events",
        description="One `state` event (the avatar resource) per change of status, tier, LoRA "
        "status, progress, queue position or photo issues, until the avatar is ready or failed "
        "or the stream's time runs out (reconnect; GET the avatar is the fallback). The instant "
        "tier arrives as a `state` with `tier: instant` while `status` is still `training`.",
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
    )
    def get(self, request, pk):
        avatar = self.get_object()

        def read() -> dict | None:
            current = Avatar.objects.filter(pk=avatar.pk).first()
            return None if current is None else dict(AvatarSerializer(current).data)

        job = avatar_waiting_job(avatar=avatar)
        return event_stream(
            stream_id=str(avatar.pk),
            topics=[avatar_topic(avatar.pk)] + ([job_topic(job.pk)] if job else []),
            read=read,
            snapshot=lambda body: (
                body["status"],
                body["tier"],
                body["lora_status"],
                body["progress"]["step"],
                body["queue"]["position"] if body["queue"] else None,
                len(body["photo_issues"]),
            ),
            is_final=lambda body: body["status"] in (AvatarStatus.READY, AvatarStatus.FAILED),
            overlay=PositionWatch(job, adjust=avatar_job_eta(job)) if job else None,
        )


# --- Export and erasure ------------------------------------------------------------------------------


class ExportView(APIView):
    permission_classes = ConsumerScopedMixin.permission_classes

    @extend_schema(
        summary="Everything held about this end user, as a zip",
        responses={(200, "application/zip"): bytes},
    )
    def get(self, request):
        payload = services.end_user_export(principal=request.user)
        response = HttpResponse(payload, content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="export.zip"'
        response["Cache-Control"] = "no-store"
        return response


class ErasureReceiptSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    end_user_digest = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField())
    consents = serializers.ListField(child=serializers.DictField())
    erased_at = serializers.DateTimeField()


class EraseView(APIView):
    permission_classes = ConsumerScopedMixin.permission_classes

    @extend_schema(
        summary="Erase everything held about this end user",
        request=None,
        responses={200: ErasureReceiptSerializer},
    )
    def post(self, request):
        receipt = services.end_user_erase(principal=request.user)
        return Response(ErasureReceiptSerializer(receipt).data)


# --- Operators: the test-avatar panel ---------------------------------------------------------------


class TestAvatarSerializer(AvatarSerializer):
    class Meta(AvatarSerializer.Meta):
        fields = AvatarSerializer.Meta.fields + [
            "panel_gender",
            "panel_age_band",
            "rights_declaration",
            "is_test_avatar",
        ]
        read_only_fields = fields


class TestAvatarCreateSerializer(serializers.Serializer):
    front_photo = serializers.FileField()
    photos = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    name = serializers.CharField(max_length=80)
    gender = serializers.ChoiceField(choices=["female", "male", "nonbinary", "unspecified"])
    age_band = serializers.ChoiceField(choices=["18-29", "30-44", "45-59", "60+"])
    rights_declaration = serializers.CharField(max_length=2000)


class TestAvatarListCreateView(generics.ListAPIView):
    """The panel is shared by all operators (and read by designers' previews)."""

    permission_classes = [IsOperator]
    serializer_class = TestAvatarSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return Avatar.objects.filter(is_test_avatar=True)

    @extend_schema(
        summary="Add a test avatar to the panel",
        request={"multipart/form-data": TestAvatarCreateSerializer},
        responses={202: TestAvatarSerializer},
    )
    def post(self, request):
        data = TestAvatarCreateSerializer(
            data={
                **{
                    k: request.data.get(k)
                    for k in ("name", "gender", "age_band", "rights_declaration")
                },
                "front_photo": request.FILES.get("front_photo"),
                "photos": _photo_files(request),
            }
        )
        data.is_valid(raise_exception=True)
        values = data.validated_data
        avatar = services.test_avatar_create(
            user=request.user,
            front=values["front_photo"],
            photos=values["photos"],
            name=values["name"],
            gender=values["gender"],
            age_band=values["age_band"],
            rights_declaration=values["rights_declaration"],
        )
        return Response(TestAvatarSerializer(avatar).data, status=status.HTTP_202_ACCEPTED)


class TestAvatarDetailView(generics.RetrieveDestroyAPIView):
    permission_classes = [IsOperator]
    serializer_class = TestAvatarSerializer

    def get_queryset(self):
        return Avatar.objects.filter(is_test_avatar=True)

    def perform_destroy(self, instance):
        services.avatar_erase(
            avatar=instance,
            actor=actor_of(self.request.user),
            purpose="test avatar removed from the panel",
        )
