import pytest


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path):
    """Each unit test gets an empty storage, so listing it proves what a test left behind.

    (Integration tests share MEDIA_ROOT with their worker process instead.)
    """
    settings.MEDIA_ROOT = tmp_path / "media"
