from django.core.management.base import BaseCommand

from avatars.crypto import master_keys, new_master_key_entry
from avatars.services import master_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-wrap every avatar's data key with the current (first) key in DATA_MASTER_KEYS. "
        "Rotation: put a new key first, keep the old ones after it, run this, then remove them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key", metavar="ID", help="only print a fresh 'ID:base64key' entry to put first"
        )

    def handle(self, *args, new_key: str | None, **options):
        if new_key:
            self.stdout.write(new_master_key_entry(new_key))
            return
        changed = master_keys_rotate()
        self.stdout.write(
            f"Re-wrapped {changed} data keys with master key {master_keys().current_id!r}."
        )
