"""Demo accounts for the embedded first run (`make run`). Never for production."""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from workstation.accounts.models import Role, User

DEMO_ACCOUNTS = [
    ("designer@demo.local", "Demo Designer", Role.DESIGNER),
    ("reviewer@demo.local", "Demo Reviewer", Role.REVIEWER),
    ("operator@demo.local", "Demo Operator", Role.OPERATOR),
]


class Command(BaseCommand):
    help = "Create demo studio accounts (random passwords, printed and kept in var/)."

    def add_arguments(self, parser):
        parser.add_argument("--reset-passwords", action="store_true")

    def handle(self, *args, reset_passwords: bool, **options):
        credentials_file = settings.VAR_DIR / "demo-accounts.txt"
        known = {}
        if credentials_file.exists():
            for line in credentials_file.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    known[parts[1]] = line
        changed = False
        for email, name, role in DEMO_ACCOUNTS:
            user = User.objects.filter(email=email).first()
            if user is not None and not reset_passwords:
                continue
            password = secrets.token_urlsafe(9)
            if user is None:
                User.objects.create_user(email, password, display_name=name, role=role)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            known[email] = f"{role:<9} {email:<22} {password}"
            changed = True
        if changed:
            credentials_file.write_text("\n".join(known.values()) + "\n")
            credentials_file.chmod(0o600)
        self.stdout.write("Demo accounts (role, email, password):")
        self.stdout.write(credentials_file.read_text() if credentials_file.exists() else "(none)")
