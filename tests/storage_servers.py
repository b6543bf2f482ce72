"""Real storage servers for the probe's tests, each on 127.0.0.1 on a free
port: moto's S3 server (IAM enforced, so wrong secrets and missing
permissions are refused as by a vendor) and Azurite (Azure Blob Storage)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": "*"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:  # Azurite can take its time over SIGTERM
        process.kill()
        process.wait(5)


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


@dataclass(frozen=True)
class Keys:
    access: str
    secret: str


class MotoS3:
    """moto's server; the first three requests (creating an admin) go unauthenticated, then IAM is enforced."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self._process, "moto")
        self.admin = self._user("admin", ALLOW_ALL, self._client("iam", Keys("setup", "setup")))

    def _client(self, service: str, keys: Keys) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=keys.access,
            aws_secret_access_key=keys.secret,
            config=Config(s3={"addressing_style": "path"}),
        )

    def _user(self, name: str, policy: dict[str, Any], iam: Any = None) -> Keys:
        iam = iam or self._client("iam", self.admin)
        iam.create_user(UserName=name)
        created = iam.create_access_key(UserName=name)["AccessKey"]
        iam.put_user_policy(UserName=name, PolicyName="probe", PolicyDocument=json.dumps(policy))
        return Keys(created["AccessKeyId"], created["SecretAccessKey"])

    def user(self, name: str, *actions: str) -> Keys:
        """A user allowed exactly `actions` (e.g. s3:PutObject) on every bucket."""
        statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
        return self._user(name, {"Version": "2012-10-17", "Statement": [statement]})

    def revoke(self, name: str, keys: Keys) -> None:
        self._client("iam", self.admin).delete_access_key(UserName=name, AccessKeyId=keys.access)

    def bucket(self, name: str) -> None:
        self._client("s3", self.admin).create_bucket(Bucket=name)

    def objects(self, bucket: str) -> list[str]:
        listed = self._client("s3", self.admin).list_objects_v2(Bucket=bucket)
        return [o["Key"] for o in listed.get("Contents", [])]

    def stop(self) -> None:
        stop_process(self._process)


class Azurite:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._data = tempfile.TemporaryDirectory()
        self._process = subprocess.Popen(
            [
                str(AZURITE),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                self._data.name,
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self._process, "Azurite")

    def container(self, name: str) -> None:
        from azure.storage.blob import BlobServiceClient

        credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
        BlobServiceClient(f"{self.url}/{AZURITE_ACCOUNT}", credential=credential).create_container(name)

    def stop(self) -> None:
        stop_process(self._process)
        self._data.cleanup()


@pytest.fixture(scope="session")
def moto_s3() -> Any:
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Any:
    if not AZURITE.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"Azurite is not installed at {AZURITE}: ./test installs it with npm")
        pytest.skip("Azurite is not installed (./test installs it when node and npm are present)")
    server = Azurite()
    yield server
    server.stop()
