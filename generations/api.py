"""Consumer generation API in the style of Replicate's predictions, and signed file links."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from avatars.models import Identity
from jobs.events import job_topic
from jobs.models import TERMINAL_STATUSES, RenderJob
from jobs.selectors import queue_estimate
from jobs.services import job_cancel
from jobs.streams import PositionWatch
from templates_studio.services import template_stats_record
from templates_studio.spec import identity_of_spec
from workstation.api.authentication import consumer_principal
from workstation.api.headers import JOB_HEADERS, cancel_after, idempotency_key
from workstation.api.permissions import IsConsumer
from workstation.api.scoping import consumer_owned
from workstation.api.sse import EventStreamView, event_stream

from . import services
from .kinds import CONSUMER_KINDS
from .selectors import job_state


def job_json(job: RenderJob, request) -> dict:
    estimate = queue_estimate(job)
    expires = timezone.now() + timedelta(seconds=settings.OUTPUT_URL_TTL_S)
    outputs = []
    if job.status == "succeeded":
        for output in job.outputs.order_by("index"):
            token = services.output_token(output)
            outputs.append(
                {
                    "index": output.index,
                    "likeness": output.likeness,
                    "width": output.width,
                    "height": output.height,
                    "url": request.build_absolute_uri(reverse("file-download", args=[token])),
                    "expires_at": expires,
                }
            )
    detail = reverse("generation-detail", args=[job.pk])
    return {
        **job_state(job),
        "refine_level": job.spec.get("refine_level", 0),
        # How the avatar entered the render: "instant", "lora" or "both".
        "identity": identity_of_spec(job.spec),
        "progress": {"step": job.progress_step, "total": job.progress_total},
        "queue": {"position": estimate.position, "eta_seconds": estimate.eta_seconds}
        if estimate
        else None,
        "output": outputs,
        # Said plainly when a refinement changed nothing (and so was not charged).
        "notice": services.IDENTICAL_REFINEMENT_NOTICE
        if services.refinement_identical_to_parent(job)
        else None,
        "deadline_at": job.deadline_at,
        "urls": {
            "get": request.build_absolute_uri(detail),
            "cancel": request.build_absolute_uri(f"{detail}/cancel"),
            "refine": request.build_absolute_uri(f"{detail}/refine"),
            "events": request.build_absolute_uri(f"{detail}/events"),
        },
    }


class GenerationScope(generics.GenericAPIView):
    # The caller's own consumer jobs; anyone else's are a 404. `owned_by` rather than
    # ConsumerScopedMixin only because the mixin's docstring would become these endpoints'
    # OpenAPI description (workstation/api/scoping.py).
    permission_classes = [IsConsumer]

    def get_queryset(self) -> QuerySet[RenderJob]:
        owned = consumer_owned(RenderJob).owned_by(consumer_principal(self.request))
        return owned.filter(kind__in=CONSUMER_KINDS)


class GenerationCreateSerializer(serializers.Serializer):
    template = serializers.UUIDField()
    avatar = serializers.UUIDField()
    likeness = serializers.FloatField(min_value=0.3, max_value=1.5, required=False)
    identity = serializers.ChoiceField(
        choices=Identity.choices,
        required=False,
        help_text='How the avatar enters the render: "instant" (the identity adapter, ready '
        'seconds after upload), "lora" (the trained LoRA) or "both". Default: the best the '
        "avatar has now (the first of the avatar's `identities`); 409 if it lacks the one asked.",
    )


class GenerationListCreateView(GenerationScope, generics.GenericAPIView):
    serializer_class = GenerationCreateSerializer

    @extend_schema(
        operation_id="generations_list",
        summary="Your generations (paginated)",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None, "DEFAULT_PAGINATION_CLASS is set"
        return self.get_paginated_response([job_json(job, request) for job in page])

    @extend_schema(
        summary="Generate portraits from a published template with your avatar",
        request=GenerationCreateSerializer,
        parameters=JOB_HEADERS,
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
    )
    def post(self, request):
        data = GenerationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job, created = services.generation_create(
            end_user=request.user.end_user,
            template_id=data.validated_data["template"],
            avatar_id=data.validated_data["avatar"],
            likeness=data.validated_data.get("likeness"),
            identity=data.validated_data.get("identity"),
            idempotency_key=idempotency_key(request),
            cancel_after_s=cancel_after(request),
        )
        return Response(
            job_json(job, request),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class GenerationDetailView(GenerationScope, generics.GenericAPIView):
    @extend_schema(
        summary="A generation: status, progress, queue position, outputs",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, pk):
        return Response(job_json(self.get_object(), request))


class GenerationCancelView(GenerationScope, generics.GenericAPIView):
    @extend_schema(
        summary="Cancel (refunded if it had not started)",
        request=None,
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request, pk):
        job = job_cancel(job=self.get_object())
        return Response(job_json(job, request))


class GenerationRefineView(GenerationScope, generics.GenericAPIView):
    @extend_schema(
        summary='"More like me": a linked job at higher likeness',
        request=None,
        parameters=JOB_HEADERS,
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request, pk):
        job, created = services.generation_refine(
            end_user=request.user.end_user,
            parent=self.get_object(),
            idempotency_key=idempotency_key(request),
            cancel_after_s=cancel_after(request),
        )
        return Response(
            job_json(job, request),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class GenerationEventsView(EventStreamView, GenerationScope, generics.GenericAPIView):
    """Server-sent events: one `state` event per change (with an id), until the job ends or
    the stream's time runs out (the client reconnects; polling GET is the fallback)."""

    @extend_schema(
        summary="Progress as server-sent events",
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
    )
    def get(self, request, pk):
        job = self.get_object()

        def read() -> dict | None:
            current = RenderJob.objects.filter(pk=job.pk).first()
            return None if current is None else job_json(current, request)

        return event_stream(
            stream_id=str(job.pk),
            topics=[job_topic(job.pk)],
            read=read,
            snapshot=lambda body: (
                body["status"],
                body["progress"]["step"],
                body["queue"]["position"] if body["queue"] else None,
            ),
            is_final=lambda body: body["status"] in TERMINAL_STATUSES,
            overlay=PositionWatch(job),
        )


class FileDownloadView(APIView):
    """A signed link (valid OUTPUT_URL_TTL_S) to one output; handed only to its owner."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Download an output through its signed link", responses={(200, "image/png"): bytes}
    )
    def get(self, request, token: str):
        output = services.output_from_token(token)
        if output is None:
            raise NotFound("This link is invalid or has expired.")
        from django.core.files.storage import default_storage

        if output.job.template_id:
            template_stats_record(template_id=output.job.template_id, field="downloads")
        response = FileResponse(
            default_storage.open(output.storage_name, "rb"), content_type=output.content_type
        )
        response["Cache-Control"] = "private, no-store"
        return response
