from django.urls import path

from . import api

urlpatterns = [
    path("auth/csrf", api.CsrfView.as_view(), name="auth-csrf"),
    path("auth/login", api.LoginView.as_view(), name="auth-login"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("auth/password", api.PasswordChangeView.as_view(), name="auth-password"),
    path("auth/invitations/<str:token>", api.InvitationView.as_view(), name="auth-invitation"),
]
