from django.core.management.base import BaseCommand, CommandError

from workstation.accounts.services import api_client_create
from workstation.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a consumer API client. The key is printed once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--instant-only",
            action="store_true",
            help="New avatars of this client stop at the instant tier unless an upload asks "
            "for the LoRA (train_lora=true).",
        )

    def handle(self, *args, name: str, instant_only: bool = False, **options):
        try:
            issued = api_client_create(name=name, train_lora_by_default=not instant_only)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"API client {issued.client.name!r} created. Its key (shown once):")
        self.stdout.write(issued.key)
