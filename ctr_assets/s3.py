"""The storage on S3: the same keys under s3://bucket[/prefix], on AWS or any S3-compatible endpoint.

boto3 (through dagster-aws's S3Resource) does the object work. DuckDB reaches `s3://` URIs through pyarrow's
S3 filesystem registered on its connection, so nothing depends on DuckDB's httpfs extension being
downloadable. Every AWS error leaves this module as a one-line StorageError naming the setting to check.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from fsspec.implementations.arrow import ArrowFSWrapper
from pyarrow import fs as arrow_fs
from pydantic import PrivateAttr

from ctr_assets.aws import CREDENTIALS, aws_errors
from ctr_assets.storage import ObjectInfo, Storage, StorageError, check_key

RETENTION_RULE_ID = "ctr-assets-retention-"
DOWNLOAD_THREADS = 8  # boto3's connection pool holds 10
DOWNLOAD_CHUNK = 1 << 20


class DuckDBS3(ArrowFSWrapper):
    """pyarrow's S3 filesystem under fsspec's "s3" protocol, which is how DuckDB routes s3:// paths to it.

    DuckDB asks for a file's size and modification time several times per file and per pass; each answer
    is one HEAD request, so answers are kept until `invalidate_cache` (the storage calls it on every write
    and delete it makes)."""

    protocol = "s3"
    cachable = False  # fsspec would otherwise share one instance, and its answers, across connections

    def __init__(self, fs: arrow_fs.S3FileSystem) -> None:
        super().__init__(fs)
        self._infos: dict[str, dict] = {}

    def info(self, path: str, **kwargs: Any) -> dict:
        path = self._strip_protocol(path)
        if path not in self._infos:
            self._infos[path] = super().info(path, **kwargs)
        return self._infos[path]

    def invalidate_cache(self, path: str | None = None) -> None:
        self._infos.clear()
        super().invalidate_cache(path)


class S3Storage(Storage):
    """A bucket (and optional key prefix) holding the layout; credentials come from the standard AWS chain."""

    bucket: str
    prefix: str = ""
    s3: S3Resource

    _client: Any = PrivateAttr(default=None)
    _credentials: Any = PrivateAttr(default=None)
    _attached: weakref.WeakSet = PrivateAttr(default_factory=weakref.WeakSet)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self) -> Any:
        """One boto3 client per resource instance (S3Resource.get_client builds a new one on each call)."""
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _errors(self, permission: str, key: str = ""):
        return aws_errors("CTR_STORAGE_URL", f"s3://{self.bucket}/{self.full_key(key)}", permission,
                          endpoint_setting="CTR_S3_ENDPOINT_URL")

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        params = {"Bucket": self.bucket, "Prefix": self.full_key(prefix)}
        if start_after:
            params["StartAfter"] = self.full_key(start_after)
        with self._errors("s3:ListBucket", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(**params):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(self._relative(item["Key"]), item["Size"], item["LastModified"])

    def read(self, key: str) -> bytes:
        with self._errors("s3:GetObject", key):
            return self.client.get_object(Bucket=self.bucket, Key=self.full_key(check_key(key)))["Body"].read()

    def exists(self, key: str) -> bool:
        with self._errors("s3:GetObject and s3:ListBucket", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.full_key(check_key(key)))
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        with self._errors("s3:DeleteObject", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(check_key(key)))
        self._changed()

    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        full_key = self.full_key(check_key(key))
        handle, staged = tempfile.mkstemp(prefix="ctr-assets-")
        os.close(handle)
        try:
            yield Path(staged)
            with self._errors("s3:PutObject", key):
                self.client.upload_file(staged, self.bucket, full_key)
            self._changed()
        finally:
            Path(staged).unlink(missing_ok=True)

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[str]]:
        """Downloaded copies, one GET each: DuckDB reading a small object in place makes a dozen requests."""
        with tempfile.TemporaryDirectory(prefix="ctr-assets-") as folder:
            paths = [os.path.join(folder, check_key(key)) for key in keys]

            def download(key: str, path: str) -> None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with self._errors("s3:GetObject", key), open(path, "wb") as out:
                    body = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))["Body"]
                    shutil.copyfileobj(body, out, DOWNLOAD_CHUNK)

            with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
                list(pool.map(download, keys, paths))
            yield paths

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def attach(self, connection: Any) -> None:
        # Re-registered on each call, so fresh credentials replace expired ones.
        if "s3" in connection.list_filesystems():
            connection.unregister_filesystem("s3")
        filesystem = DuckDBS3(self.arrow_filesystem())
        self._attached.add(filesystem)
        connection.register_filesystem(filesystem)

    def _changed(self) -> None:
        """What DuckDB connections remember about objects is stale after a write or delete."""
        for filesystem in list(self._attached):
            filesystem.invalidate_cache()

    def arrow_filesystem(self) -> arrow_fs.S3FileSystem:
        """pyarrow's S3 filesystem with the boto3 client's endpoint, region and credentials."""
        endpoint = urlsplit(self.client.meta.endpoint_url)
        options: dict[str, Any] = {"region": self.client.meta.region_name}
        if not endpoint.hostname.endswith(".amazonaws.com"):
            options.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
        if self.s3.use_unsigned_session:
            return arrow_fs.S3FileSystem(anonymous=True, **options)
        if self._credentials is None:
            self._credentials = boto3.session.Session(
                profile_name=self.s3.profile_name,
                aws_access_key_id=self.s3.aws_access_key_id,
                aws_secret_access_key=self.s3.aws_secret_access_key,
                aws_session_token=self.s3.aws_session_token,
            ).get_credentials()
        if self._credentials is None:
            raise StorageError(f"{CREDENTIALS}: none found for {self.url}; configure them as for the AWS CLI")
        frozen = self._credentials.get_frozen_credentials()  # refreshed by botocore when they expire
        return arrow_fs.S3FileSystem(
            access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token, **options
        )

    def apply_retention(self, prefix: str, hours: int) -> str:
        """An S3 lifecycle rule expiring objects under `prefix`; the bucket's other rules are kept.

        S3 counts whole days, so the hours round up to days."""
        days = max(1, math.ceil(hours / 24))
        rule_id = RETENTION_RULE_ID + prefix.strip("/").replace("/", "-")
        rule = {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": self.full_key(prefix)},
                "Expiration": {"Days": days}}
        with self._errors("s3:GetLifecycleConfiguration"):
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
        with self._errors("s3:PutLifecycleConfiguration"):
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={"Rules": [r for r in rules if r.get("ID") != rule_id] + [rule]},
            )
        return f"lifecycle rule {rule_id!r}: S3 expires {self.uri(prefix)} objects {days} day(s) after they are written"
