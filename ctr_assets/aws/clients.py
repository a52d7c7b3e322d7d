"""AWS access shared by the S3 storage, the SQS sensor, Glue and Kinesis: boto3 clients from the standard AWS
chain, and AWS errors turned into one line that names the setting to check.

Clients follow boto3's own configuration (AWS_PROFILE, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_<SERVICE>,
instance roles), so a deployment configures AWS the way every other AWS tool is configured.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.exceptions import ProxyConnectionError
from dagster_aws.utils import (
    ResourceWithBoto3Configuration,
    construct_boto_client_retry_config,
)
from pydantic import PrivateAttr

from ctr_assets.lake.storage import StorageError
from ctr_assets.settings import redact

CREDENTIALS = "AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, or the role)"
REJECTED_CREDENTIALS = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidToken",
    "InvalidClientTokenId", "UnrecognizedClientException", "TokenRefreshRequired", "IncompleteSignature",
}
WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
DENIED = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "403", "Forbidden"}
MISSING = {
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException",
    "EntityNotFoundException",
}
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
# Besides the setting a caller names, boto3 takes an endpoint from these (the S3 storage's CTR_S3_ENDPOINT_URL
# wins over them when set).
STANDARD_ENDPOINT_VARIABLES = {"CTR_S3_ENDPOINT_URL": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


class AwsClients(ResourceWithBoto3Configuration):
    """boto3 clients for SQS, Glue and Kinesis; each is built once per resource instance."""

    _clients: dict = PrivateAttr(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = boto3.session.Session(profile_name=self.profile_name)
            self._clients[service] = session.client(
                service,
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                use_ssl=self.use_ssl,
                verify=self.verify,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
                config=construct_boto_client_retry_config(self.max_attempts),
            )
        return self._clients[service]


@contextmanager
def aws_errors(setting: str, resource: str, permission: str, endpoint_setting: str = "AWS_ENDPOINT_URL") -> Iterator[None]:
    """Re-raise boto3 errors as a one-line StorageError naming what to check.

    `setting` names the variable that chose `resource`; `permission` is the IAM action the call needs."""
    try:
        yield
    except (BotoCoreError, ClientError) as error:
        raise StorageError(explain(error, setting, resource, permission, endpoint_setting)) from error
    except S3UploadFailedError as error:  # upload_file's wrapper around the ClientError
        cause = error.__cause__ or error.__context__ or error
        raise StorageError(explain(cause, setting, resource, permission, endpoint_setting)) from error


def explain(error: Exception, setting: str, resource: str, permission: str, endpoint_setting: str) -> str:
    """One line naming what to check; no URL's password ever shows in it."""
    return redact(_explain(error, setting, resource, permission, endpoint_setting))


def _explain(error: Exception, setting: str, resource: str, permission: str, endpoint_setting: str) -> str:
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return f"{CREDENTIALS}: none found for {resource}; configure them as for the AWS CLI"
    if isinstance(error, NoRegionError):
        return f"AWS_REGION: no region configured for {resource}; set AWS_REGION (or AWS_DEFAULT_REGION)"
    if isinstance(error, BotoConnectionError):
        return _unreachable(error, resource, endpoint_setting)
    if not isinstance(error, ClientError):
        return f"{resource}: {type(error).__name__}: {error}"
    code = str(error.response.get("Error", {}).get("Code", ""))
    message = error.response.get("Error", {}).get("Message", "") or code
    if code == "NoSuchBucket":
        bucket = error.response["Error"].get("BucketName") or resource
        return f"{setting}: bucket {bucket!r} does not exist: check the name, AWS_REGION and {endpoint_setting}"
    if code in MISSING or (code in {"404", "NotFound"} and permission in {"s3:ListBucket", "s3:HeadBucket"}):
        return f"{setting}: {resource} does not exist ({code}): check the name, AWS_REGION and {endpoint_setting}"
    if code in REJECTED_CREDENTIALS:
        return f"{CREDENTIALS}: rejected for {resource} ({code}: {message})"
    if code in WRONG_REGION:
        return f"AWS_REGION: {resource} is in another region ({code}): set AWS_REGION to the region it lives in"
    if code in DENIED:
        return (f"{CREDENTIALS}: access denied to {resource}: the identity needs {permission} on it "
                "(see README, Run on AWS)")
    return f"{resource}: {permission} failed ({code}: {message})"


def _unreachable(error: BotoConnectionError, resource: str, endpoint_setting: str) -> str:
    """Name what was tried: the proxy, or the endpoint and the variable that chose it; no variable when none
    did (AWS's own endpoint, or one given in code)."""
    if isinstance(error, ProxyConnectionError):
        proxy = urlsplit(error.kwargs.get("proxy_url", ""))
        chosen = next((name for name in PROXY_VARIABLES if _same_host(os.environ.get(name, ""), proxy)), "the proxy")
        return f"{chosen}: cannot reach the proxy {proxy.scheme}://{proxy.netloc} for {resource}"
    url = urlsplit(error.kwargs.get("endpoint_url", ""))
    endpoint = f"{url.scheme}://{url.netloc}"
    variables = (endpoint_setting, *STANDARD_ENDPOINT_VARIABLES.get(endpoint_setting, ("AWS_ENDPOINT_URL",)))
    chosen = next((name for name in variables if _same_host(os.environ.get(name, ""), url)), None)
    if chosen:
        return f"{chosen}: cannot reach {endpoint} for {resource}: check the URL and that the service is up"
    if (url.hostname or "").endswith(AWS_DOMAINS):
        return (f"cannot reach AWS's endpoint {endpoint} for {resource}: check the network and AWS_REGION "
                f"({endpoint_setting} is not set; it is for S3-compatible stores)")
    return f"cannot reach {endpoint} for {resource}: check the endpoint URL and that the service is up"


def _same_host(configured: str, tried) -> bool:
    """`configured` (a variable's URL) is where `tried` went: the same port and host, or a bucket's
    virtual host below it."""
    configured_url = urlsplit(configured)
    host = configured_url.hostname
    return bool(host) and configured_url.port == tried.port and (
        tried.hostname == host or (tried.hostname or "").endswith(f".{host}"))
