"""The S3 storage against a real S3 API (a moto server): URLs, lifecycle rules, and one-line errors."""

import pytest
from dagster_aws.s3 import S3Resource

from ctr_assets.aws.s3 import S3Storage
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.storage import StorageError
from ctr_assets.settings import SettingError
from ctr_assets_tests.conftest import free_port
from ctr_assets_tests.helpers import settings_for


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


def test_an_unreachable_endpoint_names_the_endpoint_setting(moto):
    closed = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage(bucket="ctr", s3=S3Resource(endpoint_url=closed, max_attempts=1))
    assert one_line_error(storage).startswith(f"CTR_S3_ENDPOINT_URL: cannot reach {closed}")


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
