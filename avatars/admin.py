from django.contrib import admin

from .models import AuditEvent, Avatar, ConsentRecord, ErasureReceipt
from .safety import describe as describe_safety


@admin.register(Avatar)
class AvatarAdmin(admin.ModelAdmin):
    """Metadata only: photos, LoRA and embedding are encrypted and never shown here."""

    list_display = ["id", "status", "is_test_avatar", "created_at", "last_used_at"]
    list_filter = ["status", "is_test_avatar"]
    exclude = ["wrapped_data_key", "reference_embedding"]
    readonly_fields = [
        f.name
        for f in Avatar._meta.fields
        if f.name not in ("wrapped_data_key", "reference_embedding")
    ]

    def changelist_view(self, request, extra_context=None):
        from django.contrib import messages

        messages.info(request, f"Content safety: {describe_safety()}")
        return super().changelist_view(request, extra_context)


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    list_display = ["id", "agreement_version", "language", "created_at", "withdrawn_at"]
    readonly_fields = [
        "id",
        "end_user",
        "agreement_version",
        "agreement_hash",
        "language",
        "text_shown",
        "items",
        "age_confirmation",
        "created_at",
        "withdrawn_at",
    ]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_id", "purpose"]
    list_filter = ["action", "object_type"]


@admin.register(ErasureReceipt)
class ErasureReceiptAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "erased_at"]
