"""S3 for the audit archive: one object per day, written whole (so a rerun overwrites with the same bytes)."""

from __future__ import annotations

from typing import IO

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


def put_file(bucket: str, key: str, body: IO[bytes], *, content_type: str) -> str:
    """Upload and return the AWS request id (for the audit trail). SSE-S3 at rest, as an archive should be."""
    response = client("s3").put_object(
        Bucket=bucket, Key=key, Body=body, ContentType=content_type, ServerSideEncryption="AES256"
    )
    return str(response.get("ResponseMetadata", {}).get("RequestId", ""))
