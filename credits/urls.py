from django.urls import path

from . import api

urlpatterns = [
    path("credits", api.CreditsView.as_view(), name="credits"),
    path("credits/grants", api.GrantView.as_view(), name="credit-grants"),
]
