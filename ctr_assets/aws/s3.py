"""The storage on S3: the same keys under s3://bucket[/prefix], on AWS or any S3-compatible endpoint.

boto3 (through dagster-aws's S3Resource) does the object work. DuckDB reaches `s3://` URIs through an fsspec
filesystem on the same client, registered on its connection, so nothing depends on DuckDB's httpfs
extension being downloadable. Every AWS error leaves this module as a one-line StorageError naming the
setting to check.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from fsspec import AbstractFileSystem
from fsspec.spec import AbstractBufferedFile
from pydantic import PrivateAttr

from ctr_assets.aws.clients import aws_errors
from ctr_assets.lake.storage import (
    ObjectInfo,
    Storage,
    StorageError,
    check_key,
    staged_folder,
)

RETENTION_RULE_ID = "ctr-assets-retention-"
DOWNLOAD_THREADS = 8  # boto3's connection pool holds 10
DOWNLOAD_CHUNK = 1 << 20
READ_BLOCK = 4 << 20  # DuckDB reads Parquet footers and column chunks; a small file takes one GET
ESCAPED = re.compile(r"\[([\[*?])\]")  # a pattern character made literal


class DuckDBS3(AbstractFileSystem):
    """The bucket as fsspec's "s3" protocol, which is how DuckDB routes s3:// paths to Python, served by the
    storage's own boto3 client (one credential chain, endpoint and region, and the same one-line errors).

    DuckDB opens a file several times per query and asks its size and age each time; pyarrow's S3
    filesystem answers every open with a HEAD request. Here a file's details are remembered until the
    storage writes or deletes something (it calls `invalidate_cache`), a glob is one flat listing, and
    reads go through a block cache. Read-only: the storage publishes every write itself."""

    protocol = "s3"
    root_marker = ""
    cachable = False  # fsspec would otherwise share one instance, and its answers, across connections

    def __init__(self, storage: "S3Storage") -> None:
        super().__init__()
        self.storage = storage
        self._infos: dict[str, dict] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return path.removeprefix("s3://").rstrip("/")

    def _call(self, permission: str, path: str, method: str, **params: Any) -> Any:
        with s3_errors(f"s3://{path}", permission):
            return getattr(self.storage.client, method)(Bucket=path.partition("/")[0], **params)

    def _entries(self, path: str, delimiter: str) -> Iterator[dict]:
        bucket, _, key = path.partition("/")
        params = {"Prefix": f"{key}/" if key else "", **({"Delimiter": delimiter} if delimiter else {})}
        with s3_errors(f"s3://{path}/", "s3:ListBucket"):
            for page in self.storage.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, **params):
                for folder in page.get("CommonPrefixes", ()):
                    yield {"name": f"{bucket}/{folder['Prefix'].rstrip('/')}", "type": "directory", "size": 0}
                for item in page.get("Contents", ()):
                    entry = {"name": f"{bucket}/{item['Key']}", "type": "file", "size": item["Size"],
                             "mtime": item["LastModified"]}
                    self._infos[entry["name"]] = entry
                    yield entry

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        entries = list(self._entries(self._strip_protocol(path), delimiter="/"))
        if not entries:
            entries = [self.info(path)]
        return entries if detail else [entry["name"] for entry in entries]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Everything below `path` from one flat listing (fsspec's default lists folder by folder)."""
        root = self._strip_protocol(path)
        found: dict[str, dict] = {}
        for entry in self._entries(root, delimiter=""):
            parts = entry["name"][len(root) + 1:].split("/")
            if maxdepth is not None and len(parts) > maxdepth:
                continue
            found[entry["name"]] = entry
            for depth in range(1, len(parts)) if withdirs else ():
                folder = "/".join([root, *parts[:depth]])
                found.setdefault(folder, {"name": folder, "type": "directory", "size": 0})
        if not found and self.isfile(root):
            found[root] = self.info(root)
        return found if detail else sorted(found)

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        """A path whose only pattern characters are escaped (`[*]`, as `glob_literal` writes them) names one
        object: looked up by itself. fsspec would list everything below the last folder before the first
        pattern character, the whole bucket for a prefix such as `data[1]`."""
        if kwargs.get("detail") or any(char in ESCAPED.sub("", path) for char in "[*?"):
            return super().glob(path, maxdepth=maxdepth, **kwargs)
        literal = ESCAPED.sub(r"\1", path)
        return [self._strip_protocol(literal)] if self.exists(literal) else []

    def info(self, path: str, **kwargs: Any) -> dict:
        path = self._strip_protocol(path)
        if path not in self._infos:
            try:
                head = self._call("s3:GetObject", path, "head_object", Key=path.partition("/")[2])
                self._infos[path] = {"name": path, "type": "file", "size": head["ContentLength"],
                                     "mtime": head["LastModified"]}
            except StorageError as error:
                if not _not_found(error.__cause__):
                    raise
                if next(self._entries(path, delimiter="/"), None) is None:
                    raise FileNotFoundError(path) from None
                return {"name": path, "type": "directory", "size": 0}
        return self._infos[path]

    def modified(self, path: str) -> datetime:
        return self.info(path)["mtime"]

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs: Any) -> "_S3File":
        if mode != "rb":
            raise NotImplementedError(f"{path}: s3:// is read-only here; the storage publishes writes")
        return _S3File(self, self._strip_protocol(path), mode, block_size=block_size or READ_BLOCK,
                       cache_type="blockcache", size=self.info(path)["size"])

    def invalidate_cache(self, path: str | None = None) -> None:
        self._infos.clear()


class _S3File(AbstractBufferedFile):
    def _fetch_range(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        response = self.fs._call("s3:GetObject", self.path, "get_object", Key=self.path.partition("/")[2],
                                 Range=f"bytes={start}-{end - 1}")
        return response["Body"].read()


def s3_errors(uri: str, permission: str):
    return aws_errors("CTR_STORAGE_URL", uri, permission, endpoint_setting="CTR_S3_ENDPOINT_URL")


def _not_found(error: BaseException | None) -> bool:
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


class S3Storage(Storage):
    """A bucket (and optional key prefix) holding the layout; credentials come from the standard AWS chain."""

    bucket: str
    prefix: str = ""
    s3: S3Resource

    _client: Any = PrivateAttr(default=None)
    _attached: weakref.WeakSet = PrivateAttr(default_factory=weakref.WeakSet)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def __getstate__(self) -> dict:
        """Worker processes get the settings, not this process's client and DuckDB filesystems."""
        state = super().__getstate__()
        state["__pydantic_private__"] = {**(state.get("__pydantic_private__") or {}),
                                         "_client": None, "_attached": weakref.WeakSet()}
        return state

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
        return s3_errors(self.uri(key), permission)

    def _list(self, prefix: str, start_after: str) -> list[ObjectInfo]:
        params = {"Bucket": self.bucket, "Prefix": self.full_key(prefix)}
        if start_after:
            params["StartAfter"] = self.full_key(start_after)
        with self._errors("s3:ListBucket", prefix):
            return [
                ObjectInfo(self._relative(item["Key"]), item["Size"], item["LastModified"])
                for page in self.client.get_paginator("list_objects_v2").paginate(**params)
                for item in page.get("Contents", ())
            ]

    def _read(self, key: str) -> bytes:
        with self._errors("s3:GetObject", key):
            return self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))["Body"].read()

    def _exists(self, key: str) -> bool:
        with self._errors("s3:GetObject and s3:ListBucket", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
            except ClientError as error:
                if _not_found(error):
                    return False
                raise
        return True

    def _delete(self, key: str) -> None:
        with self._errors("s3:DeleteObject", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
        self._changed()

    def _staging_folder(self, key: str) -> Path:
        return Path(tempfile.gettempdir())

    def _publish(self, staged: Path, key: str) -> None:
        # One PUT (or one completed multipart upload): readers see the old object or the whole new one.
        with self._errors("s3:PutObject", key):
            self.client.upload_file(str(staged), self.bucket, self.full_key(key))
        self._changed()

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[str]]:
        """Downloaded copies, one GET each: DuckDB reading a small object in place makes a dozen requests."""
        with staged_folder() as folder:
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

    def presigned_url(self, key: str, seconds: int, content_type: str) -> str:
        """An https link that opens `key` in a browser without AWS credentials, for `seconds` (SigV4 allows at
        most 7 days, and credentials that expire sooner end it sooner), served as `content_type`."""
        # Signature version 4 spelled out: botocore presigns with the deprecated version 2 in us-east-1 otherwise.
        signer = boto3.session.Session(profile_name=self.s3.profile_name).client(
            "s3", region_name=self.client.meta.region_name, endpoint_url=self.client.meta.endpoint_url,
            aws_access_key_id=self.s3.aws_access_key_id, aws_secret_access_key=self.s3.aws_secret_access_key,
            aws_session_token=self.s3.aws_session_token, config=Config(signature_version="s3v4"))
        with self._errors("s3:GetObject", key):
            return signer.generate_presigned_url(
                "get_object", ExpiresIn=seconds,
                Params={"Bucket": self.bucket, "Key": self.full_key(key), "ResponseContentType": content_type})

    def attach(self, connection: Any) -> None:
        if "s3" in connection.list_filesystems():
            connection.unregister_filesystem("s3")
        filesystem = DuckDBS3(self)
        self._attached.add(filesystem)
        connection.register_filesystem(filesystem)

    def _changed(self) -> None:
        """What DuckDB connections remember about objects is stale after a write or delete."""
        for filesystem in list(self._attached):
            filesystem.invalidate_cache()

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
