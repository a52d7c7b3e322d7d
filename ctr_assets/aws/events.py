"""S3 event notifications through SQS, the way the original Lambda was triggered: which raw objects a
message announces, receiving and deleting messages, and the one-time bucket and queue setup.

No Dagster here: the `raw_events` sensor in automation.py decides when messages may be deleted.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from ctr_assets.aws.clients import aws_errors
from ctr_assets.lake.layout import RAW, hour_of_raw_key

NOTIFICATION_ID = "ctr-assets-raw"
RECEIVE_BATCH = 10  # SQS returns at most 10 messages per ReceiveMessage


def created_raw_keys(body: str, bucket: str, prefix: str) -> list[str]:
    """Storage keys (below `prefix`) of the raw objects a notification announces as created in `bucket`.

    A message may carry several records; keys arrive URL-encoded (a space as '+'); the `s3:TestEvent` S3
    sends when notifications are set up, deletions, other buckets and keys outside raw/ announce nothing.
    Raises ValueError for a body that is not an S3 notification at all."""
    try:
        message = json.loads(body)
    except ValueError:
        raise ValueError(f"not JSON: {body[:80]!r}") from None
    if not isinstance(message, dict):
        raise ValueError(f"not an S3 event notification: {body[:80]!r}")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise ValueError(f"not an S3 event notification: {body[:80]!r}")
    keys = []
    root = f"{prefix}/" if prefix else ""
    for record in records:
        if not isinstance(record, dict) or not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3") or {}
        if (s3.get("bucket") or {}).get("name") != bucket:
            continue
        key = unquote_plus((s3.get("object") or {}).get("key", ""))
        if key.startswith(root) and hour_of_raw_key(key[len(root):]) is not None:
            keys.append(key[len(root):])
    return keys


def receive(client: Any, queue_url: str, limit: int, visibility_seconds: int) -> list[dict]:
    """Up to `limit` messages, hidden from other readers for `visibility_seconds`."""
    messages: list[dict] = []
    with _sqs_errors(queue_url, "sqs:ReceiveMessage"):
        while len(messages) < limit:
            batch = client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=min(RECEIVE_BATCH, limit - len(messages)),
                VisibilityTimeout=visibility_seconds, WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                break
            messages.extend(batch)
    return messages


def delete(client: Any, queue_url: str, receipt_handles: list[str]) -> int:
    """Delete received messages; returns how many SQS refused (their handle expired: they will come back,
    and are then recognized as already requested)."""
    refused = 0
    with _sqs_errors(queue_url, "sqs:DeleteMessage"):
        for start in range(0, len(receipt_handles), RECEIVE_BATCH):
            entries = [{"Id": str(number), "ReceiptHandle": handle}
                       for number, handle in enumerate(receipt_handles[start:start + RECEIVE_BATCH])]
            refused += len(client.delete_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", []))
    return refused


def configure_notifications(s3: Any, sqs: Any, bucket: str, prefix: str, queue: str) -> str:
    """Send the bucket's object-created events under raw/ to an SQS queue; returns the queue URL.

    `queue` is a URL, or a name (the queue is created if missing). The queue policy lets this bucket send;
    the bucket's other notifications and the queue's other policy statements are kept."""
    with _sqs_errors(queue, "sqs:CreateQueue, sqs:GetQueueAttributes and sqs:SetQueueAttributes"):
        queue_url = queue if "://" in queue else sqs.create_queue(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
        queue_arn = attributes["QueueArn"]
        partition = queue_arn.split(":")[1]
        sid = f"ctr-assets-s3-{bucket}"
        policy = json.loads(attributes.get("Policy") or '{"Version": "2012-10-17", "Statement": []}')
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != sid] + [{
            "Sid": sid, "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"}},
        }]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    resource = f"s3://{bucket}/{prefix}"
    with aws_errors("CTR_STORAGE_URL", resource, "s3:GetBucketNotification and s3:PutBucketNotification",
                    endpoint_setting="CTR_S3_ENDPOINT_URL"):
        current = s3.get_bucket_notification_configuration(Bucket=bucket)
        current.pop("ResponseMetadata", None)
        ours = {"Id": NOTIFICATION_ID, "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": (f"{prefix}/" if prefix else "") + RAW}]}}}
        current["QueueConfigurations"] = [
            c for c in current.get("QueueConfigurations", []) if c.get("Id") != NOTIFICATION_ID] + [ours]
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=current)
    return queue_url


def _sqs_errors(queue: str, permission: str):
    return aws_errors("CTR_SQS_QUEUE_URL", f"queue {queue}", permission, endpoint_setting="AWS_ENDPOINT_URL_SQS")
