"""Who can act in the system.

Two kinds of principal:
- studio users (designers, reviewers, operators): invited people who sign in with a session;
- consumer API clients (our partners' servers), who act for their own end users. An end user
  is an opaque reference chosen by the client, so we never hold a consumer's identity.
"""

from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    DESIGNER = "designer", "Designer"
    REVIEWER = "reviewer", "Reviewer"
    OPERATOR = "operator", "Operator"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields) -> User:
        fields.update(is_staff=True, is_superuser=True)
        fields.setdefault("role", Role.OPERATOR)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=120, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def has_role(self, *roles: str) -> bool:
        return self.is_active and self.role in roles


class Invitation(models.Model):
    """A single-use, expiring invitation. Only a hash of the token is stored."""

    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation({self.email}, {self.role})"

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()


class ApiClient(models.Model):
    """A consumer-facing partner server. The key is shown once; only its hash is kept."""

    name = models.CharField(max_length=120, unique=True)
    key_prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Optional webhook (generations/webhooks.py): job events are POSTed here, signed with the
    # secret (HMAC-SHA256). The secret is kept in clear because we must sign with it; it is
    # shown to the client once, when generated, and never logged.
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=64, blank=True)
    # Whether a new avatar also trains its LoRA (the studio tier) when the upload does not say;
    # off: avatars stop at the instant tier unless a request asks for the LoRA.
    train_lora_by_default = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class EndUser(models.Model):
    """An API client's end user, known to us only by the client's opaque reference.

    Every consumer-side object hangs off this row, so scoping is one foreign key and erasure
    is one cascade.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="end_users")
    external_ref = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["client", "external_ref"], name="unique_end_user_per_client"
            ),
        ]

    def __str__(self) -> str:
        return f"EndUser({self.client_id}:{self.pk})"
