"""Files named by an object-store URI (``s3://bucket/prefix``, ``gs://...``) or a local path, through
pyarrow's filesystems: packed shards read from a store (data/shards.py) and the orchestrator's
storage of hand-offs between processes use the same access."""
from __future__ import annotations

import os
from pathlib import Path


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def filesystem(location: str):
    """(pyarrow filesystem, path inside it) of a URI or a local path (made absolute).

    S3 is reached with the usual variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) and more
    patience than the SDK's defaults, which fail a request (a checkpoint's upload, a cell with
    it) after 3 s without a byte, where a busy store or node may stall that long."""
    import pyarrow.fs as pafs
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location.removeprefix("file://")).expanduser().resolve())
    if location.startswith("s3://"):
        path = location.removeprefix("s3://").rstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and endpoint is None:  # as FileSystem.from_uri does: ask AWS where the bucket is
            region = pafs.resolve_s3_region(path.split("/", 1)[0])
        scheme, _, host = (endpoint or "").rpartition("://")
        fs = pafs.S3FileSystem(region=region, endpoint_override=host or None, scheme=scheme or None,
                               request_timeout=60, connect_timeout=10,
                               retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=6))
        return fs, path
    fs, path = pafs.FileSystem.from_uri(location)
    return fs, path.rstrip("/")
