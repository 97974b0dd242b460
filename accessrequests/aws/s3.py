"""S3 for the audit archive and checkpoints: objects written whole, under Object Lock when retention is asked for."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from botocore.exceptions import ClientError

from accessrequests.aws.client import client, error_details


def object_exists(bucket: str, key: str) -> bool:
    try:
        client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_details(exc)[0] in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def put_file(
    bucket: str,
    key: str,
    body: IO[bytes] | bytes,
    *,
    content_type: str,
    metadata: Mapping[str, str] | None = None,
    retain_until: datetime | None = None,
) -> str:
    """Upload and return the AWS request id (for the audit trail). SSE-S3 at rest, as an archive should be.

    With ``retain_until`` the object version is locked in COMPLIANCE mode: nobody, not even the account's root
    user, can delete or overwrite that version before the date (the bucket must have Object Lock enabled, which
    also turns on versioning, so writing the key again adds a version and keeps the locked one)."""
    extra: dict[str, Any] = {}
    if metadata:
        extra["Metadata"] = dict(metadata)
    if retain_until is not None:
        # S3 requires an integrity checksum on every write to an Object Lock bucket; botocore adds CRC32.
        extra.update(
            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain_until, ChecksumAlgorithm="CRC32"
        )
    response = client("s3").put_object(
        Bucket=bucket, Key=key, Body=body, ContentType=content_type, ServerSideEncryption="AES256", **extra
    )
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))


def list_keys(bucket: str, prefix: str) -> Iterator[str]:
    paginator = client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def get_bytes(bucket: str, key: str) -> bytes:
    return client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def get_lines(bucket: str, key: str) -> Iterator[bytes]:
    """An object's lines as they arrive, so a large archive is never held in memory."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    yield from body.iter_lines()


def metadata(bucket: str, key: str) -> dict[str, str]:
    return dict(client("s3").head_object(Bucket=bucket, Key=key).get("Metadata", {}))
