"""Deleting objects removes the folders they emptied, and only those."""

from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from workstation.storage import delete_objects


def test_emptied_folders_go_and_shared_ones_stay(settings):
    a = default_storage.save("avatars/a1/photos/0.bin", ContentFile(b"x"))
    b = default_storage.save("avatars/a1/lora.bin", ContentFile(b"x"))
    c = default_storage.save("avatars/a2/photos/0.bin", ContentFile(b"x"))
    root = Path(settings.MEDIA_ROOT)
    assert delete_objects([a]) == 1
    assert not (root / "avatars/a1/photos").exists() and (root / "avatars/a1").is_dir()
    delete_objects([b, "avatars/a1/missing.bin"])
    assert not (root / "avatars/a1").exists()
    assert (root / "avatars/a2/photos").is_dir() and default_storage.exists(c)
    assert root.is_dir()
