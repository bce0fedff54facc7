"""Operator test renders: the vertical slice through API, queue, worker, engine and storage."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from workstation.api.permissions import IsOperator
from workstation.api.scoping import StudioOwnedMixin

from . import services
from .kinds import TEST_RENDER
from .models import RenderJob


class TestRenderCreateSerializer(serializers.Serializer):
    """The engine validates the full spec; these are the fields an operator may set."""

    prompt = serializers.CharField(max_length=2000)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1)
    negative_prompt = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    steps = serializers.IntegerField(required=False)
    guidance = serializers.FloatField(required=False)
    width = serializers.IntegerField(required=False)
    height = serializers.IntegerField(required=False)


class RenderOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    seed = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    sha256 = serializers.CharField()
    image_url = serializers.SerializerMethodField()

    def get_image_url(self, output) -> str:
        path = reverse("test-render-output", args=[output.job_id, output.index])
        return self.context["request"].build_absolute_uri(path)


class RenderJobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    outputs = RenderOutputSerializer(many=True, read_only=True)

    class Meta:
        model = RenderJob
        fields = [
            "id",
            "kind",
            "status",
            "spec",
            "progress",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "outputs",
        ]
        read_only_fields = fields

    def get_progress(self, job) -> dict:
        return {"step": job.progress_step, "total": job.progress_total}

    def get_error(self, job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}


class TestRenderScope(StudioOwnedMixin):
    """Operators see only their own test renders: a second operator gets 404."""

    permission_classes = [IsOperator]
    owner_field = "created_by"

    def scoped_queryset(self):
        return RenderJob.objects.filter(kind=TEST_RENDER).prefetch_related("outputs")


class TestRenderListCreateView(TestRenderScope, generics.ListAPIView):
    serializer_class = RenderJobSerializer

    @extend_schema(
        summary="Queue an operator test render",
        request=TestRenderCreateSerializer,
        responses={202: RenderJobSerializer},
    )
    def post(self, request):
        data = TestRenderCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.test_render_create(user=request.user, spec=dict(data.validated_data))
        body = RenderJobSerializer(job, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class TestRenderDetailView(TestRenderScope, generics.RetrieveAPIView):
    serializer_class = RenderJobSerializer


class TestRenderOutputView(TestRenderScope, generics.GenericAPIView):
    """Streams one output image through storage after the owner check (works for S3 too)."""

    @extend_schema(summary="Download a test render's image", responses={(200, "image/png"): bytes})
    def get(self, request, pk, index: int):
        job = self.get_object()
        output = job.outputs.filter(index=index).first()
        if output is None:
            raise NotFound("No such output.")
        response = FileResponse(
            default_storage.open(output.storage_name, "rb"), content_type=output.content_type
        )
        response["Cache-Control"] = "private, max-age=300"
        return response
