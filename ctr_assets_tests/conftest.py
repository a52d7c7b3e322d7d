"""Fixtures shared across test modules: a real storage folder, a real DuckDB, the hand-built contacts, and a
real S3 API (one moto server on 127.0.0.1 for the session: S3, SQS, Glue, Kinesis and Athena) with settings that run
a test on a local folder and on a bucket."""

import http.client
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import boto3
import duckdb
import pytest

from ctr_assets.lake.storage import LocalStorage
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.drivers import write_crash_sample
from ctr_assets_tests.hand_built import hand_built  # noqa: F401  (a session fixture: the metric tests' data)
from ctr_assets_tests.helpers import settings_for

REGION = "us-east-1"
# The standard AWS chain, pointed at moto: nothing from the developer's own AWS configuration leaks in.
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours its request log
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Moto:
    url: str
    log: Path  # the request lines the server answered

    def client(self, service: str, **credentials):
        credentials = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **credentials)

    def new_bucket(self) -> str:
        name = f"ctr-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(Bucket=name)
        return name

    def seed_empty_objects(self, bucket: str, keys: Iterable[str]) -> None:
        """Put empty objects straight into the server's store (see moto_server.py): over HTTP each PUT costs
        about 10 ms, too slow for the 100,000 a listing test needs. Everything under test goes through HTTP."""
        body = "\n".join(keys).encode()
        request = urllib.request.Request(f"{self.url}/ctr-seed/{bucket}", data=body, method="POST")
        urllib.request.urlopen(request, timeout=300).close()

    @contextmanager
    def requests(self) -> Iterator[list[str]]:
        """The request lines the server answers inside the block ("GET /bucket?list-type=2&prefix=…")."""
        lines: list[str] = []
        start = self.log.stat().st_size
        try:
            yield lines
        finally:
            time.sleep(0.2)  # the server logs a request once it has answered it
            with self.log.open("rb") as log:
                log.seek(start)
                lines += [ANSI.sub("", line.decode()).split('"')[1] for line in log if b'"' in line]

    def user_allowed(self, *actions: str) -> dict[str, str]:
        """Credentials of a new IAM user allowed only `actions` (enforced inside `enforcing_iam`)."""
        iam, name = self.client("iam"), f"user-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="allowed", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def athena_outcomes(self, *outcomes: dict) -> None:
        """How the next Athena queries end (see moto_server.py): `state`, `reason`, `data_scanned` each."""
        request = urllib.request.Request(f"{self.url}/ctr-athena-outcomes", data=json.dumps(outcomes).encode())
        urllib.request.urlopen(request, timeout=10).close()

    @contextmanager
    def enforcing_iam(self):
        """moto checking signatures and IAM policies inside the block (it accepts anything by default)."""
        def set_checked_after(count: bytes) -> None:
            request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=count,
                                             headers={"Content-Type": "text/plain"})
            urllib.request.urlopen(request, timeout=10).close()

        set_checked_after(b"0")
        try:
            yield
        finally:
            set_checked_after(b"inf")


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("moto") / "requests.log"
    server = subprocess.Popen([sys.executable, "-m", "ctr_assets_tests.moto_server", str(port), str(log)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "the moto server did not start"
            time.sleep(0.1)
    with pytest.MonkeyPatch.context() as patch:
        for name in UNSET:
            patch.delenv(name, raising=False)
        for name, value in AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        # SQS, Glue, Kinesis and Athena are found the standard way; S3 through CTR_S3_ENDPOINT_URL.
        for service in ("SQS", "GLUE", "KINESIS", "ATHENA"):
            patch.setenv(f"AWS_ENDPOINT_URL_{service}", url)
        yield Moto(url, log)
    server.terminate()
    server.wait()


class FlakyEndpoint:
    """A real HTTP proxy in front of the S3 API that answers one request in `fail_every` with 503 SlowDown,
    or drops its connection without an answer (taking turns), before the request reaches the server."""

    SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")

    def __init__(self, target: str):
        self.target = urllib.parse.urlsplit(target)
        self.fail_every = 0
        self.requests = self.injected = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _any(self):
                body = self._body()
                with endpoint.lock:
                    endpoint.requests += 1
                    fault = endpoint.fail_every and endpoint.requests % endpoint.fail_every == 0
                    endpoint.injected += bool(fault)
                    drop = fault and endpoint.injected % 2 == 0
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(endpoint.SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(endpoint.SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(endpoint.target.hostname, endpoint.target.port, timeout=60)
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() not in ("connection", "transfer-encoding", "expect", "content-length")}
                headers["Content-Length"] = str(len(body))
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(name, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def flaky_endpoint(moto):
    endpoint = FlakyEndpoint(moto.url)
    yield endpoint
    endpoint.server.shutdown()


@pytest.fixture
def s3_settings(moto, tmp_path, monkeypatch) -> CtrSettings:
    """Settings on a fresh bucket (under a key prefix), with the CTR_* variables set to match."""
    settings = settings_for(tmp_path, storage_url=f"s3://{moto.new_bucket()}/contact-centre",
                            s3_endpoint_url=moto.url, duckdb_path=str(tmp_path / "ctr.duckdb"),
                            glue_database=f"connect_{uuid.uuid4().hex[:8]}")
    for name in ("storage_url", "s3_endpoint_url", "duckdb_path", "first_hour", "glue_database"):
        monkeypatch.setenv(f"CTR_{name.upper()}", getattr(settings, name))
    return settings


@pytest.fixture(params=["local", "s3"])
def settings(request, tmp_path, monkeypatch) -> CtrSettings:
    """The same test on a local folder and on a bucket."""
    if request.param == "s3":
        return request.getfixturevalue("s3_settings")
    settings = settings_for(tmp_path)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    return settings


@pytest.fixture(scope="session")
def crash_sample(tmp_path_factory) -> Path:
    """Raw objects only (`write_crash_sample`: every kind of write a run makes); tests copy them, never change them."""
    folder = tmp_path_factory.mktemp("crash_sample")
    write_crash_sample(LocalStorage(root=str(folder)))
    return folder


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(root=str(tmp_path / "data"))


@pytest.fixture
def connection():
    with duckdb.connect() as connection:
        yield connection
