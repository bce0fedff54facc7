"""Studio sign-in API (session auth) and invitation acceptance."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from workstation.accounts import lockout
from workstation.api.authentication import StudioSessionAuthentication
from workstation.api.permissions import IsStudioUser
from workstation.api.throttles import LoginRateThrottle
from workstation.errors import InvalidInput

from . import selectors, services
from .models import User


def _enforce_csrf(request) -> None:
    """Signing in starts a session, so it is CSRF-checked even for anonymous callers (DRF only
    checks requests that already carry a session). Prevents login CSRF."""
    StudioSessionAuthentication().enforce_csrf(request)


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "display_name", "role"]
        read_only_fields = fields


class LoginSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False, write_only=True)


class CsrfView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(summary="Set the CSRF cookie for the browser app", responses={204: None})
    @method_decorator(ensure_csrf_cookie)
    def get(self, request):
        return Response(status=status.HTTP_204_NO_CONTENT)


class LoginView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        summary="Sign in (session)", request=LoginSerializer, responses={200: UserSerializer}
    )
    def post(self, request):
        _enforce_csrf(request)
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"].lower()
        # A locked account is refused before its password is checked (429 account_locked).
        lockout.check_not_locked(email=email)
        user = authenticate(request, email=email, password=data.validated_data["password"])
        if user is None:
            raise InvalidInput("Wrong email or password.")
        login(request._request, user)
        return Response(UserSerializer(user).data)


class LogoutView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="Sign out", request=None, responses={204: None})
    def post(self, request):
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(summary="The signed-in studio user", responses={200: UserSerializer})
    def get(self, request):
        return Response(UserSerializer(request.user).data)


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(trim_whitespace=False, write_only=True)
    new_password = serializers.CharField(trim_whitespace=False, write_only=True)


class PasswordChangeView(APIView):
    permission_classes = [IsStudioUser]

    @extend_schema(
        summary="Change your password", request=PasswordChangeSerializer, responses={204: None}
    )
    def post(self, request):
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        if not user.check_password(data.validated_data["current_password"]):
            raise InvalidInput({"current_password": ["This is not your current password."]})
        try:
            validate_password(data.validated_data["new_password"], user=user)
        except DjangoValidationError as exc:
            raise InvalidInput({"new_password": list(exc.messages)}) from exc
        user.set_password(data.validated_data["new_password"])
        user.save(update_fields=["password"])
        update_session_auth_hash(request._request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.CharField()
    expires_at = serializers.DateTimeField()


class InvitationAcceptSerializer(serializers.Serializer):
    password = serializers.CharField(trim_whitespace=False, write_only=True)
    display_name = serializers.CharField(max_length=120, required=False, allow_blank=True)


class InvitationView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        summary="Look up an invitation by its token", responses={200: InvitationSerializer}
    )
    def get(self, request, token: str):
        invitation = selectors.invitation_for_token(token=token)
        if invitation is None:
            raise InvalidInput({"token": ["This invitation is invalid, expired or already used."]})
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(
        summary="Accept an invitation: set a password and sign in",
        request=InvitationAcceptSerializer,
        responses={201: UserSerializer},
    )
    def post(self, request, token: str):
        _enforce_csrf(request)
        data = InvitationAcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.invitation_accept(
            token=token,
            password=data.validated_data["password"],
            display_name=data.validated_data.get("display_name", ""),
        )
        login(request._request, user, backend="workstation.accounts.backends.LockoutModelBackend")
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)
