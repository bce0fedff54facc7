import pytest

from workstation.engine_host import get_registry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_registry():
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()


def test_health_ready(api, tiny_models):
    response = api.get("/api/v1/health")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "broker", "storage", "engine"}
    assert all(c["ready"] for c in body["components"].values())


def test_health_503_when_model_missing(api, settings, tmp_path):
    settings.ENGINE_MODELS_DIR = tmp_path / "empty"
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["components"]["engine"]["ready"] is False


def test_health_shows_no_filesystem_paths(api, settings, tmp_path, tiny_models):
    for models_dir in (settings.ENGINE_MODELS_DIR, tmp_path / "empty"):
        settings.ENGINE_MODELS_DIR = models_dir
        get_registry.cache_clear()
        text = api.get("/api/v1/health").content.decode()
        assert str(models_dir) not in text and "/" + "var" not in text
        assert str(tmp_path) not in text


def test_health_503_when_broker_unreachable(api, tiny_models, monkeypatch):
    from workstation.celery import app

    dead_broker = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    original = app.conf.broker_url
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", dead_broker)
    app.conf.broker_url = dead_broker
    try:
        response = api.get("/api/v1/health")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["components"]["broker"]["ready"] is False
