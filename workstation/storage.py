"""Deleting stored objects without leaving their folders behind.

Object stores (S3) have no folders. The local filesystem storage does: an avatar's photos live
under `avatars/<avatar id>/photos/`, a job's images under `renders/<job id>/`, and an empty
folder named by an id would outlive the erasure of what it held. `delete_objects` removes the
objects, then each folder they emptied, up to (not including) the storage root.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from django.core.files.storage import default_storage


def delete_objects(names: Iterable[str]) -> int:
    """Deletes the named objects (missing ones are fine) and prunes emptied folders."""
    deleted = 0
    folders: set[str] = set()
    for name in names:
        if not name:
            continue
        default_storage.delete(name)
        deleted += 1
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        if parent:
            folders.add(parent)
    _prune_empty_folders(folders)
    return deleted


def list_objects_under(prefix: str) -> list[str]:
    """Every object name under ``prefix`` (a "folder": on an object store only a key prefix,
    so `listdir` is used, which both backends answer)."""
    found: list[str] = []

    def walk(path: str) -> None:
        try:
            directories, files = default_storage.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        found.extend(f"{path}/{name}" for name in files)
        for directory in directories:
            walk(f"{path}/{directory}")

    walk(prefix.rstrip("/"))
    return found


def delete_prefix(prefix: str) -> int:
    """Deletes every object under ``prefix`` (and the folders they leave empty)."""
    return delete_objects(list_objects_under(prefix))


def _prune_empty_folders(folders: set[str]) -> None:
    try:
        root = Path(default_storage.path("")).resolve()
    except NotImplementedError:  # an object store: nothing to prune
        return
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        path = Path(default_storage.path(folder)).resolve()
        while path != root and root in path.parents:
            try:
                path.rmdir()  # only succeeds when empty
            except OSError:
                break
            path = path.parent
