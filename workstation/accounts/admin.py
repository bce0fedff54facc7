from django.contrib import admin

from .models import ApiClient, EndUser, Invitation, User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["email", "display_name", "role", "is_active", "date_joined"]
    list_filter = ["role", "is_active"]
    search_fields = ["email", "display_name"]
    exclude = ["password"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "role", "created_at", "expires_at", "accepted_at"]
    exclude = ["token_hash"]


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ["name", "key_prefix", "train_lora_by_default", "created_at", "revoked_at"]
    exclude = ["key_hash", "webhook_secret"]


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    list_display = ["pk", "client", "created_at"]
