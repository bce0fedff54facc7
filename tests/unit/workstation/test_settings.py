"""Deployment settings: only the environment differs between the embedded run and production."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 64 + "-production-secret-from-the-environment",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "studio.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://studio.example.com",
    "DATABASE_URL": "postgres://app:pw@db.internal:5432/workstation",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
    "CACHE_URL": "redis://redis.internal:6379/1",
    "STORAGE_BACKEND": "s3",
    "S3_BUCKET": "portraits",
    "S3_ENDPOINT_URL": "https://s3.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "USE_X_FORWARDED_PROTO": "true",
    "DATA_MASTER_KEYS": "prod1:" + "A" * 43,
    "CONTENT_SAFETY_CHECKER": "diffusers:/srv/models/safety-checker",
    "METRICS_TOKEN": "m" * 32,
}


def _run(args, env_overrides, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and not k.startswith("DJANGO_")
    }
    env.update(
        env_overrides, VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="workstation.settings"
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_production_configuration_passes_check_deploy(tmp_path):
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV, tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "missing, check_id",
    [
        ("SECRET_KEY", "workstation.E001"),
        ("DATA_MASTER_KEYS", "avatars.E001"),
    ],
)
def test_check_deploy_fails_without_secrets_in_environment(tmp_path, missing, check_id):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = _run(["manage.py", "check", "--deploy"], env, tmp_path)
    assert result.returncode != 0
    assert check_id in result.stdout + result.stderr


def test_check_deploy_warns_when_content_safety_is_not_configured(tmp_path):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "CONTENT_SAFETY_CHECKER"}
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode != 0 and "avatars.W001" in result.stdout + result.stderr


def test_production_settings_resolve_to_real_services(tmp_path):
    script = (
        "import django, json; django.setup();"
        "from django.conf import settings as s;"
        "from django.core.files.storage import storages; d = storages['default'];"
        "print(json.dumps({'db': s.DATABASES['default']['ENGINE'],"
        " 'db_name': s.DATABASES['default']['NAME'],"
        " 'cache': s.CACHES['default']['BACKEND'], 'broker': s.CELERY_BROKER_URL,"
        " 'visibility': s.CELERY_BROKER_TRANSPORT_OPTIONS.get('visibility_timeout'),"
        " 'hard_limit': s.CELERY_TASK_TIME_LIMIT,"
        " 'storage': type(d).__name__,"
        " 'acl': d.default_acl, 'overwrite': d.file_overwrite, 'bucket': d.bucket_name}))"
    )
    result = _run(["-c", script], PRODUCTION_ENV, tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["db"] == "django.db.backends.postgresql" and got["db_name"] == "workstation"
    assert "redis" in got["cache"].lower()
    assert got["broker"].startswith("redis://")
    assert got["visibility"] > got["hard_limit"]
    assert got["storage"] == "S3Storage"
    assert got["acl"] == "private" and got["overwrite"] is False and got["bucket"] == "portraits"


def test_embedded_defaults_need_no_services(tmp_path):
    script = (
        "import django, json; django.setup();"
        "from django.conf import settings as s;"
        "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'broker': s.CELERY_BROKER_URL,"
        " 'storage': s.STORAGES['default']['BACKEND'], 'profile': s.ENGINE_PROFILE}))"
    )
    # _run drops every production variable (DATABASE_URL, CELERY_BROKER_URL, ...) first.
    result = _run(["-c", script], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == {
        "db": "django.db.backends.sqlite3",
        "broker": "filesystem://localhost/",
        "storage": "django.core.files.storage.FileSystemStorage",
        "profile": "tiny",
    }


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    body = schema.json()
    assert body["openapi"].startswith("3.")
    assert "/api/v1/ops/test-render" in body["paths"]
    assert api.get("/api/v1/docs/").status_code == 200
