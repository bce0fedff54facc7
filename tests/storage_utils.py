"""Lists what is really in the configured storage (tests never trust a flag)."""

from django.core.files.storage import default_storage


def list_objects(prefix: str = "") -> list[str]:
    """Every object name under `prefix`, on the local filesystem or an object store (where a
    "folder" is only a key prefix: `exists()` is false for it, `listdir()` still lists it)."""
    found: list[str] = []

    def walk(path: str) -> None:
        try:
            directories, files = default_storage.listdir(path)
        except FileNotFoundError:  # the filesystem: no such folder, nothing under it
            return
        found.extend(f"{path}/{name}" if path else name for name in files)
        for directory in directories:
            walk(f"{path}/{directory}" if path else directory)

    walk(prefix.rstrip("/"))
    return sorted(found)
