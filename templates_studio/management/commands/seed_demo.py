"""Demo accounts for the embedded first run (`make run`). Never for production."""

import secrets

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from avatars.models import Avatar
from avatars.services import test_avatar_create
from templates_studio import demo
from templates_studio.models import Template
from templates_studio.services import pose_asset_create, template_create
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
        self._seed_panel()
        self._seed_templates()

    def _seed_panel(self) -> None:
        """Two test avatars, trained by the worker through the real pipeline."""

        if Avatar.objects.filter(is_test_avatar=True).exists():
            return
        operator = User.objects.get(email="operator@demo.local")
        count = max(settings.AVATAR_MIN_PHOTOS, 1)
        for name, gender, age_band, image in demo.DEMO_PANEL:
            face = image()
            photos = [
                SimpleUploadedFile(f"{i}.jpg", data)
                for i, data in enumerate(demo.photo_set(face, count))
            ]
            avatar = test_avatar_create(
                user=operator,
                front=SimpleUploadedFile("front.jpg", demo.jpeg(face)),
                photos=photos,
                name=name,
                gender=gender,
                age_band=age_band,
                rights_declaration="Public-domain sample images bundled with scikit-image "
                "and matplotlib (demo only).",
            )
            self.stdout.write(f"Test avatar {name!r} queued for training ({avatar.id}).")

    def _seed_templates(self) -> None:

        designer = User.objects.get(email="designer@demo.local")
        if Template.objects.filter(owner=designer).exists():
            return
        pose, _ = pose_asset_create(user=designer, pose=demo.DEMO_POSE)
        for title, category, prompt in demo.DEMO_TEMPLATES:
            template_create(
                user=designer,
                title=title,
                category=category,
                tags=["demo"],
                spec={
                    "prompt": prompt,
                    "seeds": [1, 2],
                    "steps": 4,
                    "controls": [{"kind": "pose", "asset": pose.sha256}],
                    "change_note": "Demo template",
                },
            )
            self.stdout.write(f"Demo template {title!r} created (draft).")
