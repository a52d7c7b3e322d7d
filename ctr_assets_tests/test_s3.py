"""The S3 storage against a real S3 API (a moto server): URLs, lifecycle rules, one-line errors that name
what was tried and never a password."""

import pytest
from dagster_aws.s3 import S3Resource

from ctr_assets.aws.s3 import S3Storage
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.storage import StorageError
from ctr_assets.settings import SettingError
from ctr_assets_tests.conftest import free_port
from ctr_assets_tests.helpers import settings_for
from ctr_assets_tests.test_cli import ctr_assets
from ctr_assets_tests.test_cli import one_line_error as one_line_cli_error


def test_the_storage_url_picks_a_bucket_and_prefix(s3_settings):
    storage = storage_for(s3_settings)
    assert isinstance(storage, S3Storage)
    assert storage.url == s3_settings.storage_url
    assert storage.uri("raw/2026/") == f"{s3_settings.storage_url}/raw/2026/"
    assert storage.client is storage.client

    storage.write("raw/x", b"1")
    (stored,) = storage.s3.get_client().list_objects_v2(Bucket=storage.bucket)["Contents"]
    assert stored["Key"] == "contact-centre/raw/x"


@pytest.mark.parametrize("url, endpoint, variable", [
    ("s3://Bad_Bucket/x", "", "CTR_STORAGE_URL"),
    ("s3://", "", "CTR_STORAGE_URL"),
    ("s3://fine-bucket", "localhost:9000", "CTR_S3_ENDPOINT_URL"),
])
def test_a_malformed_url_or_endpoint_is_a_setting_error(tmp_path, url, endpoint, variable):
    with pytest.raises(SettingError, match=f"^{variable}: "):
        settings_for(tmp_path, storage_url=url, s3_endpoint_url=endpoint)


def test_retention_is_a_lifecycle_rule_that_keeps_the_buckets_other_rules(s3_settings, moto):
    storage = storage_for(s3_settings)
    client = moto.client("s3")
    other = {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
    client.put_bucket_lifecycle_configuration(Bucket=storage.bucket, LifecycleConfiguration={"Rules": [other]})

    storage.apply_retention("flatfiles/", hours=24)
    said = storage.apply_retention("flatfiles/", hours=36)  # applying again replaces our rule

    rules = {rule["ID"]: rule for rule in client.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]}
    assert set(rules) == {"logs", "ctr-assets-retention-flatfiles"}
    ours = rules["ctr-assets-retention-flatfiles"]
    assert ours["Filter"] == {"Prefix": "contact-centre/flatfiles/"} and ours["Expiration"] == {"Days": 2}
    assert "2 day(s)" in said


def one_line_error(storage: S3Storage) -> str:
    with pytest.raises(StorageError) as raised:
        list(storage.list("raw/"))
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_missing_bucket_names_the_storage_url(moto):
    storage = S3Storage(bucket="no-such-bucket", s3=S3Resource(endpoint_url=moto.url))
    assert one_line_error(storage).startswith("CTR_STORAGE_URL: bucket 'no-such-bucket' does not exist")


def test_an_unreachable_endpoint_is_named_with_the_variable_that_chose_it(moto, tmp_path, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CTR_S3_ENDPOINT_URL", closed)
    settings = settings_for(tmp_path, storage_url="s3://ctr-bucket/ctr", s3_endpoint_url=closed)
    storage = S3Storage(bucket="ctr-bucket", prefix="ctr", s3=S3Resource(endpoint_url=closed, max_attempts=1))
    assert storage_for(settings).s3.endpoint_url == closed
    assert one_line_error(storage) == (f"CTR_S3_ENDPOINT_URL: cannot reach {closed} for s3://ctr-bucket/ctr/raw/: "
                                       "check the URL and that the service is up")

    monkeypatch.delenv("CTR_S3_ENDPOINT_URL")  # the same endpoint, given in code: no variable to blame
    assert one_line_error(storage) == (f"cannot reach {closed} for s3://ctr-bucket/ctr/raw/: check the endpoint URL "
                                       "and that the service is up")


def test_an_unreachable_aws_endpoint_is_named_as_aws_and_not_as_a_setting_nobody_set(moto, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "xx-nowhere-1")  # a region no DNS knows: AWS's endpoint is unreachable
    monkeypatch.delenv("CTR_S3_ENDPOINT_URL", raising=False)
    storage = S3Storage(bucket="ctr-bucket", s3=S3Resource(region_name="xx-nowhere-1", max_attempts=1))
    assert one_line_error(storage) == (
        "cannot reach AWS's endpoint https://ctr-bucket.s3.xx-nowhere-1.amazonaws.com for s3://ctr-bucket/raw/: "
        "check the network and AWS_REGION (CTR_S3_ENDPOINT_URL is not set; it is for S3-compatible stores)")


def test_a_password_in_the_endpoint_url_is_never_printed(moto, tmp_path):
    """Through the command, as a user meets it: the connection error names the endpoint, without its password."""
    closed = f"127.0.0.1:{free_port()}"
    result = ctr_assets("status", "--storage", "s3://ctr-bucket/ctr", cwd=tmp_path,
                        env={"CTR_S3_ENDPOINT_URL": f"http://u5er:s3cr3t@{closed}", "CTR_GLUE_DATABASE": "connect"})
    line = one_line_cli_error(result)
    assert line.startswith(f"ctr-assets: error: CTR_S3_ENDPOINT_URL: cannot reach http://***@{closed} for ")
    assert "s3cr3t" not in result.stderr + result.stdout and "u5er" not in line


@pytest.mark.parametrize("overrides", [
    {"s3_endpoint_url": "http://ann:s3cr3t@minio.internal:9000/path"},
    {"catalog_uri": "postgresql+psycopg2://ann:s3cr3t@db.internal/ctr catalog"},
    {"sqs_queue_url": "https://ann:s3cr3t@sqs.internal/ 1"},
    {"storage_url": "s3://ann:s3cr3t@bucket/ctr"},
])
def test_a_setting_error_never_shows_a_urls_password(tmp_path, overrides):
    storage_url = overrides.pop("storage_url", "s3://fine-bucket")
    with pytest.raises(SettingError) as raised:
        settings_for(tmp_path, storage_url=storage_url, **overrides)
    assert "s3cr3t" not in str(raised.value) and "://***@" in str(raised.value)


def test_missing_credentials_say_where_credentials_come_from(moto, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    storage = S3Storage(bucket=moto.new_bucket(), s3=S3Resource(endpoint_url=moto.url))
    assert one_line_error(storage).startswith("AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID")


def test_rejected_credentials_and_missing_permissions_are_one_line_each(moto):
    bucket = moto.new_bucket()
    reader = moto.user_allowed("s3:GetObject")
    unknown = S3Storage(bucket=bucket, s3=S3Resource(
        endpoint_url=moto.url, aws_access_key_id="AKIAUNKNOWN", aws_secret_access_key="nope"))
    allowed_to_read = S3Storage(bucket=bucket, s3=S3Resource(endpoint_url=moto.url, **reader))

    with moto.enforcing_iam():
        rejected = one_line_error(unknown)
        denied = one_line_error(allowed_to_read)

    assert rejected.startswith("AWS credentials (") and "rejected" in rejected and "InvalidAccessKeyId" in rejected
    assert denied.startswith("AWS credentials (") and "needs s3:ListBucket" in denied
