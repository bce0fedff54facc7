"""An S3-compatible server on loopback for the storage tests: moto's standalone server (a dev
dependency), started by the `s3_server` fixture in tests/conftest.py on a free port and stopped
at the end of the session. It never needs `.ci/run` or anything outside the virtual
environment; if it cannot start, the tests that need it fail (never skip).

Checks on what the server really holds go through a plain S3 client (`S3Server.client`), not
through Django's storage: the storage is the thing under test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 60
REGION = "us-east-1"
ACCESS_KEY = "ptw-test-access-key"
SECRET_KEY = "ptw-test-secret-key"  # moto accepts any credentials


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """One moto server process; one bucket for the session; keys under `prefix` (S3_PREFIX)."""

    def __init__(self, log_path: Path, *, prefix: str = "media"):
        self.log_path = log_path
        self.bucket = f"ptw-test-{uuid.uuid4().hex[:12]}"
        self.prefix = prefix
        self.process: subprocess.Popen | None = None
        self.endpoint_url = ""
        self._client: Any = None

    # --- the process ---------------------------------------------------------------------

    def start(self) -> None:
        # A free port can be taken between the probe and moto's bind: try a few.
        for _ in range(3):
            port = _free_port()
            self.endpoint_url = f"http://127.0.0.1:{port}"
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_answering():
                self.client.create_bucket(Bucket=self.bucket)
                return
            self.stop()
        pytest.fail(
            f"moto's S3 server did not start on loopback:\n{self.log()[-3000:]}", pytrace=False
        )

    def _wait_answering(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- configuration, as production gets it ------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment a worker process needs to use this server (README, OPERATIONS.md)."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": REGION,
            "S3_ACCESS_KEY_ID": ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "S3_PREFIX": self.prefix,
        }

    def storage_setting(self) -> dict[str, Any]:
        """STORAGES["default"] as workstation/settings.py builds it from `env`."""
        from workstation.settings import s3_storage_options

        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_storage_options(
                bucket=self.bucket,
                endpoint_url=self.endpoint_url,
                region=REGION,
                access_key=ACCESS_KEY,
                secret_key=SECRET_KEY,
                prefix=self.prefix,
            ),
        }

    # --- looking at what the server holds ------------------------------------------------

    @property
    def client(self) -> Any:
        """A plain S3 client (botocore's, reached through django-storages' connection)."""
        if self._client is None:
            from storages.backends.s3 import S3Storage

            options = self.storage_setting()["OPTIONS"]
            self._client = S3Storage(**options).connection.meta.client
        return self._client

    def key(self, name: str) -> str:
        """The object key of a storage name (the storage puts everything under `prefix`)."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def keys(self, under: str = "") -> set[str]:
        """Every object key in the bucket under `under` (a storage name prefix)."""
        found: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(under)):
            found.update(entry["Key"] for entry in page.get("Contents", ()))
        return found

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def assert_private_and_encrypted(self, key: str) -> None:
        """No grant beyond the owner's, anonymous GET refused, server-side encryption on."""
        grants = self.client.get_object_acl(Bucket=self.bucket, Key=key)["Grants"]
        assert [(g["Grantee"]["Type"], g["Permission"]) for g in grants] == [
            ("CanonicalUser", "FULL_CONTROL")
        ], (key, grants)
        assert self.anonymous_get_status(key) == 403, key
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        assert head.get("ServerSideEncryption") == "AES256", (key, head)

    def anonymous_get_status(self, key: str) -> int:
        url = f"{self.endpoint_url}/{self.bucket}/{key}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
