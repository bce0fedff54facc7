"""Lists what is really in the configured storage (tests never trust a flag)."""

from django.core.files.storage import default_storage


def list_objects(prefix: str = "") -> list[str]:
    found: list[str] = []

    def walk(path: str) -> None:
        if path and not default_storage.exists(path):
            return
        directories, files = default_storage.listdir(path)
        found.extend(f"{path}/{name}" if path else name for name in files)
        for directory in directories:
            walk(f"{path}/{directory}" if path else directory)

    walk(prefix.rstrip("/"))
    return found
