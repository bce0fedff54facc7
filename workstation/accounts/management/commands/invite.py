from django.core.management.base import BaseCommand, CommandError

from workstation.accounts.models import Role
from workstation.accounts.services import invitation_create
from workstation.errors import ApplicationError


class Command(BaseCommand):
    help = "Invite a studio user; prints a single-use link that expires (INVITATION_TTL_HOURS)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args, email: str, role: str, **options):
        try:
            issued = invitation_create(email=email, role=role)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Invitation for {issued.invitation.email} ({role}), valid until "
            f"{issued.invitation.expires_at:%Y-%m-%d %H:%M %Z}:\n{issued.url}"
        )
