"""Studio API (session auth, role-checked) under /api/studio/, and the consumer catalog."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from avatars.models import Avatar, Identity, LoraStatus
from jobs.selectors import queue_estimate
from workstation.accounts.models import Role
from workstation.api.permissions import HasRole, IsApiClient, IsReviewer, IsStudioUser
from workstation.api.scoping import StudioOwnedMixin
from workstation.errors import ConflictError, InvalidInput

from . import services
from .models import (
    Category,
    CellStatus,
    ControlAsset,
    Preview,
    PreviewCell,
    Review,
    ReviewState,
    Template,
    TemplateEvent,
    TemplateRevision,
    TemplateStatus,
)
from .selectors import panel_likeness_by_template, published_templates, template_panel_likeness
from .spec import TEMPLATE_SPEC_SCHEMA, spec_diff

IsAuthor = HasRole.of(Role.DESIGNER, Role.REVIEWER)

# The short names of the identities a preview cell can use (the contact sheet's row labels).
TIER_LABELS = {
    Identity.INSTANT.value: "Instant",
    Identity.LORA.value: "LoRA",
    Identity.BOTH.value: "LoRA + adapter",
}


def visible_templates(user) -> QuerySet[Template]:
    """Designers: their own. Reviewers: their own and everything submitted. Operators: all."""
    queryset = Template.objects.select_related("owner", "live_revision")
    if user.role == Role.OPERATOR:
        return queryset
    if user.role == Role.REVIEWER:
        return queryset.filter(Q(owner=user) | Q(reviews__isnull=False)).distinct()
    return queryset.filter(owner=user)


def _template_for(request, pk, *, write: bool = False) -> Template:
    template = get_object_or_404(visible_templates(request.user), pk=pk)
    if write and template.owner_id != request.user.pk:
        raise PermissionDenied("Only the template's owner can change it.")
    return template


def _revision_for(request, pk, number, *, write: bool = False) -> TemplateRevision:
    template = _template_for(request, pk, write=write)
    return get_object_or_404(template.revisions, number=number)


# --- Serializers ------------------------------------------------------------------------------------


class RevisionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.email")

    class Meta:
        model = TemplateRevision
        fields = ["id", "number", "spec", "change_note", "created_by", "created_at"]
        read_only_fields = fields


class ReviewSerializer(serializers.ModelSerializer):
    template_title = serializers.CharField(source="template.title")
    revision_number = serializers.IntegerField(source="revision.number")
    submitted_by = serializers.CharField(source="submitted_by.email")
    decided_by = serializers.CharField(source="decided_by.email", allow_null=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "template",
            "template_title",
            "revision_number",
            "preview",
            "state",
            "note",
            "submitted_by",
            "submitted_at",
            "decided_by",
            "comment",
            "decided_at",
        ]
        read_only_fields = fields


class TemplateSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.email", read_only=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=20, required=False
    )
    live_revision_number = serializers.IntegerField(
        source="live_revision.number", allow_null=True, read_only=True
    )
    latest_revision_number = serializers.SerializerMethodField()
    latest_review = serializers.SerializerMethodField()

    class Meta:
        model = Template
        fields = [
            "id",
            "title",
            "slug",
            "category",
            "tags",
            "intended_gender",
            "intended_age",
            "status",
            "owner",
            "live_revision_number",
            "latest_revision_number",
            "latest_review",
            "catalog_order",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "slug",
            "status",
            "owner",
            "live_revision_number",
            "latest_revision_number",
            "latest_review",
            "catalog_order",
            "created_at",
            "updated_at",
        ]

    def get_latest_revision_number(self, template) -> int | None:
        latest = template.revisions.order_by("-number").first()
        return latest.number if latest else None

    def get_latest_review(self, template) -> dict | None:
        review = template.reviews.order_by("-submitted_at").first()
        return ReviewSerializer(review).data if review else None


class TemplateCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=120)
    category = serializers.ChoiceField(choices=Category.choices)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, default=list, max_length=20
    )
    intended_gender = serializers.ChoiceField(
        choices=["female", "male", "any"], required=False, default="any"
    )
    intended_age = serializers.ChoiceField(
        choices=["18-29", "30-44", "45-59", "60+", "any"], required=False, default="any"
    )
    spec = serializers.JSONField()


class SpecSerializer(serializers.Serializer):
    spec = serializers.JSONField()


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


def _cell_json(cell: PreviewCell | None, request) -> dict | None:
    if cell is None:
        return None
    job = cell.job
    return {
        "id": cell.pk,
        "avatar": str(cell.avatar_id),
        "seed": cell.seed,
        # How the avatar entered this render: "instant", "lora" or "both".
        "identity": cell.identity,
        "status": cell.status,
        "progress": {"step": job.progress_step, "total": job.progress_total} if job else None,
        "likeness": cell.likeness,
        "error": cell.error or None,
        "image_url": request.build_absolute_uri(reverse("studio-cell-image", args=[cell.pk]))
        if cell.status == CellStatus.SUCCEEDED
        else None,
    }


def grid_json(preview: Preview, request) -> dict:
    cells = {(str(c.avatar_id), c.seed): c for c in preview.cells.select_related("job")}
    avatars = {str(a.id): a for a in Avatar.objects.filter(pk__in=preview.avatar_ids)}
    done = sum(1 for c in cells.values() if c.status != CellStatus.PENDING)
    queued_ahead = None
    pending_jobs = [c.job for c in cells.values() if c.status == CellStatus.PENDING and c.job]
    if pending_jobs:
        # The grid's next cell: where it stands under the fair policy (jobs.selectors).
        estimate = queue_estimate(min(pending_jobs, key=lambda job: job.created_at))
        queued_ahead = estimate.position if estimate is not None else 0
    return {
        "id": str(preview.id),
        "revision": preview.revision.number,
        "full_panel": preview.full_panel,
        "new_cells": preview.new_cells,
        "seeds": preview.seeds,
        "avatars": [
            {
                "id": a,
                "name": avatars[a].name if a in avatars else "(removed)",
                "gender": getattr(avatars.get(a), "panel_gender", ""),
                "age_band": getattr(avatars.get(a), "panel_age_band", ""),
            }
            for a in preview.avatar_ids
        ],
        "rows": [
            [_cell_json(cells.get((a, s)), request) for s in preview.seeds]
            for a in preview.avatar_ids
        ],
        "progress": {"done": done, "total": len(cells)},
        "complete": done == len(cells)
        and all(c.status == CellStatus.SUCCEEDED for c in cells.values()),
        "queue": {"jobs_ahead": queued_ahead} if queued_ahead is not None else None,
        "created_at": preview.created_at,
    }


# --- Templates and revisions ---------------------------------------------------------------------


class SpecSchemaView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="The JSON Schema of a template revision's spec",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        return Response(TEMPLATE_SPEC_SCHEMA)


class TemplateListCreateView(generics.ListAPIView):
    permission_classes = [IsStudioUser]
    serializer_class = TemplateSerializer

    def get_queryset(self):
        queryset = visible_templates(self.request.user)
        wanted = self.request.query_params.get("status")
        return queryset.filter(status=wanted) if wanted else queryset

    @extend_schema(
        summary="Create a template with its first revision",
        request=TemplateCreateSerializer,
        responses={201: TemplateSerializer},
    )
    def post(self, request):
        if not request.user.has_role(Role.DESIGNER, Role.REVIEWER):
            raise PermissionDenied("Only designers author templates.")
        data = TemplateCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        template = services.template_create(user=request.user, **data.validated_data)
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailView(generics.RetrieveUpdateAPIView):
    permission_classes = [IsStudioUser]
    serializer_class = TemplateSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        writing = self.request.method not in ("GET", "HEAD", "OPTIONS")
        template = _template_for(self.request, self.kwargs["pk"], write=writing)
        if writing and template.status == TemplateStatus.RETIRED:
            raise ConflictError("This template is retired; it cannot be edited.")
        return template


class RevisionListCreateView(generics.ListAPIView):
    permission_classes = [IsStudioUser]
    serializer_class = RevisionSerializer
    pagination_class = None

    def get_queryset(self):
        return _template_for(self.request, self.kwargs["pk"]).revisions.order_by("-number")

    @extend_schema(
        summary="Save a new draft revision (the live revision is untouched)",
        request=SpecSerializer,
        responses={201: RevisionSerializer},
    )
    def post(self, request, pk):
        template = _template_for(request, pk, write=True)
        data = SpecSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        revision = services.revision_create(
            template=template, user=request.user, spec=data.validated_data["spec"]
        )
        return Response(RevisionSerializer(revision).data, status=status.HTTP_201_CREATED)


class RevisionDetailView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(summary="One revision", responses={200: RevisionSerializer})
    def get(self, request, pk, number):
        return Response(RevisionSerializer(_revision_for(request, pk, number)).data)


class CompareView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="Field-by-field spec diff and both grids, cell against cell",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, pk):
        template = _template_for(request, pk)
        try:
            a, b = int(request.query_params["a"]), int(request.query_params["b"])
        except (KeyError, ValueError) as exc:
            raise InvalidInput({"a": ["Give revision numbers as ?a=1&b=2."]}) from exc
        left = get_object_or_404(template.revisions, number=a)
        right = get_object_or_404(template.revisions, number=b)

        def latest_grid(revision):
            preview = revision.previews.order_by("-created_at").first()
            return grid_json(preview, request) if preview else None

        return Response(
            {
                "a": a,
                "b": b,
                "diff": spec_diff(left.spec, right.spec),
                "grids": {"a": latest_grid(left), "b": latest_grid(right)},
            }
        )


# --- Previews ---------------------------------------------------------------------------------------


class PreviewCreateSerializer(serializers.Serializer):
    avatars = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_empty=False
    )
    identity = serializers.ChoiceField(
        choices=Identity.choices,
        required=False,
        allow_null=True,
        default=None,
        help_text="How every avatar enters its renders: instant (identity adapter), lora or "
        "both. Omitted or null: each avatar's best available (both, else lora, else instant). "
        "A chosen avatar without the named identity is a 400 naming it.",
    )


class PreviewCreateView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="Preview a revision on the test-avatar panel (all or a subset)",
        request=PreviewCreateSerializer,
        responses={202: OpenApiTypes.OBJECT},
    )
    def post(self, request, pk, number):
        revision = _revision_for(request, pk, number, write=True)
        data = PreviewCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preview = services.preview_create(
            revision=revision,
            user=request.user,
            avatar_ids=data.validated_data.get("avatars"),
            identity=data.validated_data["identity"],
        )
        return Response(grid_json(preview, request), status=status.HTTP_202_ACCEPTED)


def _preview_for(request, preview_id) -> Preview:
    preview = get_object_or_404(Preview.objects.select_related("revision__template"), pk=preview_id)
    if not visible_templates(request.user).filter(pk=preview.revision.template_id).exists():
        raise NotFound()
    return preview


class PreviewDetailView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="A preview grid; cells fill in as jobs finish", responses={200: OpenApiTypes.OBJECT}
    )
    def get(self, request, preview_id):
        return Response(grid_json(_preview_for(request, preview_id), request))


class ContactSheetView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="The preview grid as one labelled PNG", responses={(200, "image/png"): bytes}
    )
    def get(self, request, preview_id):
        from engine.contact_sheet import contact_sheet_png

        preview = _preview_for(request, preview_id)
        cells = {(str(c.avatar_id), c.seed): c for c in preview.cells.all()}
        names = {str(a.id): a.name for a in Avatar.objects.filter(pk__in=preview.avatar_ids)}
        tiers = {a: TIER_LABELS.get(c.identity, c.identity) for (a, _), c in cells.items()}
        grid = [
            [
                services.cell_image(cells[(a, s)])
                if (a, s) in cells and cells[(a, s)].status == CellStatus.SUCCEEDED
                else None
                for s in preview.seeds
            ]
            for a in preview.avatar_ids
        ]
        template = preview.revision.template
        png = contact_sheet_png(
            grid,
            row_labels=[
                " · ".join(filter(None, [names.get(a, a[:8]), tiers.get(a)]))
                for a in preview.avatar_ids
            ],
            column_labels=[f"seed {s}" for s in preview.seeds],
            title=f"{template.title} r{preview.revision.number}",
        )
        response = HttpResponse(png, content_type="image/png")
        response["Content-Disposition"] = (
            f'attachment; filename="{template.slug}-r{preview.revision.number}.png"'
        )
        return response


class CellImageView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(summary="One preview cell's image", responses={(200, "image/png"): bytes})
    def get(self, request, cell_id):
        cell = get_object_or_404(PreviewCell.objects.select_related("revision"), pk=cell_id)
        if (
            not visible_templates(request.user).filter(pk=cell.revision.template_id).exists()
            or cell.status != CellStatus.SUCCEEDED
        ):
            raise NotFound()
        response = FileResponse(
            default_storage.open(cell.output_name, "rb"), content_type="image/png"
        )
        response["Cache-Control"] = "private, max-age=3600"
        return response


# --- Workflow ------------------------------------------------------------------------------------------


class SubmitView(APIView):
    permission_classes = [IsAuthor]

    @extend_schema(
        summary="Submit a revision for review (needs a complete full-panel preview)",
        request=NoteSerializer,
        responses={201: ReviewSerializer},
    )
    def post(self, request, pk, number):
        revision = _revision_for(request, pk, number, write=True)
        data = NoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = services.template_submit(
            revision=revision, user=request.user, note=data.validated_data["note"]
        )
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class ReviewQueueView(generics.ListAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewSerializer

    def get_queryset(self):
        state = self.request.query_params.get("state", ReviewState.OPEN)
        return (
            Review.objects.filter(state=state)
            .select_related("template", "revision", "submitted_by", "decided_by")
            .order_by("submitted_at")
        )


class ReviewDetailView(generics.RetrieveAPIView):
    permission_classes = [IsReviewer]
    serializer_class = ReviewSerializer
    queryset = Review.objects.select_related("template", "revision", "submitted_by", "decided_by")

    def retrieve(self, request, *args, **kwargs):
        review = self.get_object()
        body = ReviewSerializer(review).data
        body["spec"] = review.revision.spec
        live = review.template.live_revision
        body["diff_against_live"] = spec_diff(live.spec, review.revision.spec) if live else None
        body["grid"] = grid_json(review.preview, request)
        return Response(body)


class ReviewDecisionView(APIView):
    """Approve (and publish) or request changes; the comment is required for the latter."""

    permission_classes = [IsReviewer]
    decision = ""

    @extend_schema(
        summary="Decide an open review",
        request=CommentSerializer,
        responses={200: TemplateSerializer},
    )
    def post(self, request, review_id):
        review = get_object_or_404(Review, pk=review_id)
        data = CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decide = {
            "approve": services.review_approve,
            "request-changes": services.review_request_changes,
        }[self.decision]
        template = decide(review=review, user=request.user, comment=data.validated_data["comment"])
        return Response(TemplateSerializer(template).data)


class TemplateTransitionView(APIView):
    """Unpublish or retire (reviewers, and the owner for their own template)."""

    permission_classes = [IsStudioUser]
    transition = ""

    @extend_schema(request=CommentSerializer, responses={200: TemplateSerializer})
    def post(self, request, pk):
        template = _template_for(request, pk)
        if not (request.user.has_role(Role.REVIEWER) or template.owner_id == request.user.pk):
            raise PermissionDenied("Only reviewers or the owner can do this.")
        data = CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = {"unpublish": services.template_unpublish, "retire": services.template_retire}[
            self.transition
        ]
        template = action(
            template=template, user=request.user, comment=data.validated_data["comment"]
        )
        return Response(TemplateSerializer(template).data)


class CatalogOrderSerializer(serializers.Serializer):
    templates = serializers.ListField(child=serializers.UUIDField(), allow_empty=False)


class CatalogOrderView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        summary="Set the catalog order (reviewers)",
        request=CatalogOrderSerializer,
        responses={204: None},
    )
    def put(self, request):
        data = CatalogOrderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.catalog_reorder(user=request.user, template_ids=data.validated_data["templates"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.email")
    template_title = serializers.CharField(source="template.title")
    revision_number = serializers.IntegerField(source="revision.number", allow_null=True)

    class Meta:
        model = TemplateEvent
        fields = [
            "id",
            "template",
            "template_title",
            "revision_number",
            "actor",
            "action",
            "from_status",
            "to_status",
            "comment",
            "created_at",
        ]
        read_only_fields = fields


class EventFeedView(generics.ListAPIView):
    """Workflow events on templates you can see; `?after=<id>` for what is new."""

    permission_classes = [IsStudioUser]
    serializer_class = EventSerializer

    def get_queryset(self):
        queryset = TemplateEvent.objects.filter(
            template__in=visible_templates(self.request.user)
        ).select_related("actor", "template", "revision")
        if "template" in self.kwargs:
            # A template you cannot see is a 404, as on its other endpoints (not an empty page).
            queryset = queryset.filter(
                template=_template_for(self.request, self.kwargs["template"])
            )
        after = self.request.query_params.get("after")
        if after:
            if not (after.isascii() and after.isdigit() and len(after) < 19):
                raise InvalidInput({"after": ["Give an event id (a whole number)."]})
            queryset = queryset.filter(id__gt=int(after))
        return queryset


class TierLikenessSerializer(serializers.Serializer):
    mean = serializers.FloatField(help_text="Mean likeness of these cells (0-1).")
    cells = serializers.IntegerField(help_text="Succeeded preview cells with a likeness.")


class PanelLikenessSerializer(serializers.Serializer):
    """Mean likeness per identity on the test panel (an identity without cells is absent)."""

    instant = TierLikenessSerializer(
        required=False, help_text="Cells rendered with the identity adapter alone."
    )
    lora = TierLikenessSerializer(required=False, help_text="Cells rendered with the LoRA alone.")
    both = TierLikenessSerializer(
        required=False, help_text="Cells rendered with the LoRA and the identity adapter."
    )


_PANEL_LIKENESS_HELP = (
    "Mean likeness per identity over the live revision's succeeded preview cells on the "
    "test-avatar panel; {} without a live revision or without such cells."
)


class TemplateStatsSerializer(serializers.Serializer):
    generations = serializers.IntegerField()
    refinements = serializers.IntegerField()
    downloads = serializers.IntegerField()
    failures = serializers.IntegerField()
    panel_likeness = PanelLikenessSerializer(help_text=_PANEL_LIKENESS_HELP)


class StatsView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="Generations, refinements, downloads, failures; panel likeness per identity",
        responses={200: TemplateStatsSerializer},
    )
    def get(self, request, pk):
        template = _template_for(request, pk)
        stats = template.stats
        return Response(
            TemplateStatsSerializer(
                {
                    "generations": stats.generations,
                    "refinements": stats.refinements,
                    "downloads": stats.downloads,
                    "failures": stats.failures,
                    "panel_likeness": template_panel_likeness(template=template),
                }
            ).data
        )


# --- Assets and the panel ---------------------------------------------------------------------------


class AssetSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = ControlAsset
        fields = [
            "id",
            "sha256",
            "kind",
            "width",
            "height",
            "keypoints",
            "image_url",
            "created_at",
        ]
        read_only_fields = fields

    def get_image_url(self, asset) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("studio-asset-image", args=[asset.sha256])
        )


class AssetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    kind = serializers.ChoiceField(choices=["canny", "depth", "lighting", "reference", "pose"])


class AssetListCreateView(StudioOwnedMixin, generics.ListAPIView):
    # Your uploads, and only yours: each owner's assets are their own (deduplicated only
    # within the owner; another designer's identical upload is a separate asset).
    permission_classes = [IsAuthor]
    serializer_class = AssetSerializer
    parser_classes = [MultiPartParser, FormParser]
    owner_field = "owner"

    def scoped_queryset(self):
        return ControlAsset.objects.all()

    @extend_schema(
        summary="Upload a control or reference image (201 new; 200 you already uploaded it)",
        request={"multipart/form-data": AssetUploadSerializer},
        responses={201: AssetSerializer},
    )
    def post(self, request):
        data = AssetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asset, created = services.asset_upload(
            user=request.user,
            data=data.validated_data["file"].read(),
            kind=data.validated_data["kind"],
        )
        return Response(
            AssetSerializer(asset, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PoseSerializer(serializers.Serializer):
    pose = serializers.DictField()


class PoseAssetView(APIView):
    permission_classes = [IsAuthor]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Create a pose control image from COCO-18 keypoints",
        request=PoseSerializer,
        responses={201: AssetSerializer},
    )
    def post(self, request):
        data = PoseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        asset, created = services.pose_asset_create(
            user=request.user, pose=data.validated_data["pose"]
        )
        return Response(
            AssetSerializer(asset, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AssetImageView(StudioOwnedMixin, generics.GenericAPIView):
    # Owners see their assets; reviewers and operators see all (docs/API.md). The path names
    # the content hash, as revision specs do: unique among one owner's assets; for reviewers
    # and operators any owner's copy is the same image.
    permission_classes = [IsStudioUser]
    owner_field = "owner"
    roles_seeing_all = (Role.REVIEWER, Role.OPERATOR)

    def scoped_queryset(self):
        return ControlAsset.objects.all()

    @extend_schema(summary="An asset's image", responses={(200, "image/png"): bytes})
    def get(self, request, sha256):
        asset = self.get_queryset().filter(sha256=sha256).order_by("created_at", "pk").first()
        if asset is None:
            raise NotFound()
        return FileResponse(
            default_storage.open(asset.storage_name, "rb"), content_type="image/png"
        )


class PanelAvatarSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    gender = serializers.CharField(source="panel_gender")
    age_band = serializers.CharField(source="panel_age_band")
    tier = serializers.ChoiceField(
        choices=["instant", "studio"],
        allow_null=True,
        help_text="The best tier ready: studio (the LoRA) or instant (the identity adapter).",
    )
    lora_status = serializers.ChoiceField(choices=LoraStatus.choices)
    # The same choice sets as the avatar API's `tier` and `identities` (one enum each).
    identities = serializers.ListField(
        child=serializers.ChoiceField(choices=Identity.choices),
        source="available_identities",
        help_text="The identities a preview of this avatar can use now, best first.",
    )


class PanelView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="The test-avatar panel previews render on (avatars with a tier ready)",
        responses={200: PanelAvatarSerializer(many=True)},
    )
    def get(self, request):
        return Response(PanelAvatarSerializer(services.panel_avatars(), many=True).data)


# --- Consumer catalog -------------------------------------------------------------------------------


class CatalogLikenessOptionSerializer(serializers.Serializer):
    default = serializers.FloatField()
    min = serializers.FloatField()
    max = serializers.FloatField()


class CatalogOptionsSerializer(serializers.Serializer):
    likeness = CatalogLikenessOptionSerializer()
    images_per_generation = serializers.IntegerField()


class CatalogTemplateSerializer(serializers.Serializer):
    """A published template as consumers see it: no prompts, no control assets."""

    id = serializers.UUIDField()
    slug = serializers.SlugField()
    title = serializers.CharField()
    category = serializers.ChoiceField(choices=Category.choices)
    tags = serializers.ListField(child=serializers.CharField())
    intended_gender = serializers.CharField()
    intended_age = serializers.CharField()
    order = serializers.IntegerField()
    cover_url = serializers.URLField(allow_null=True)
    options = CatalogOptionsSerializer(help_text="Only what a consumer may choose.")
    panel_likeness = PanelLikenessSerializer(help_text=_PANEL_LIKENESS_HELP)


class CatalogListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = CatalogTemplateSerializer(many=True)


def _catalog_json(template: Template, request, *, panel_likeness: dict) -> dict:
    assert template.live_revision is not None  # catalog templates have a live revision
    spec = template.live_revision.spec
    return {
        "id": template.id,
        "slug": template.slug,
        "title": template.title,
        "category": template.category,
        "tags": template.tags,
        "intended_gender": template.intended_gender,
        "intended_age": template.intended_age,
        "order": template.catalog_order,
        "cover_url": request.build_absolute_uri(reverse("catalog-cover", args=[template.pk]))
        if template.cover_id
        else None,
        # Only what a consumer may choose; prompts and control assets stay with the studio.
        "options": {
            "likeness": {"default": spec["default_likeness"], "min": 0.3, "max": 1.5},
            "images_per_generation": spec["keep"],
        },
        # How well each identity (instant adapter, LoRA, both) kept the test panel's faces.
        "panel_likeness": panel_likeness,
    }


class CatalogListView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(
        operation_id="catalog_templates_list",
        summary="Published templates (no prompts, no assets)",
        responses={200: CatalogListSerializer},
    )
    def get(self, request):
        queryset = published_templates()
        category = request.query_params.get("category")
        if category:
            queryset = queryset.filter(category=category)
        templates = list(queryset)
        likeness = panel_likeness_by_template(templates=templates)
        body = {
            "count": len(templates),
            "results": [
                _catalog_json(t, request, panel_likeness=likeness.get(t.pk, {})) for t in templates
            ],
        }
        return Response(CatalogListSerializer(body).data)


class CatalogDetailView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(summary="One published template", responses={200: CatalogTemplateSerializer})
    def get(self, request, pk):
        template = get_object_or_404(published_templates(), pk=pk)
        body = _catalog_json(
            template, request, panel_likeness=template_panel_likeness(template=template)
        )
        return Response(CatalogTemplateSerializer(body).data)


class CatalogCoverView(APIView):
    permission_classes = [IsApiClient]

    @extend_schema(summary="A template's cover image", responses={(200, "image/png"): bytes})
    def get(self, request, pk):
        template = get_object_or_404(published_templates(), pk=pk)
        if template.cover is None:
            raise NotFound("This template has no cover.")
        return FileResponse(
            default_storage.open(template.cover.output_name, "rb"), content_type="image/png"
        )
