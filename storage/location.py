"""Where a store lives: a local folder (the default) or a prefix in object storage, and how to reach it.

`s3://BUCKET/PREFIX` (with an endpoint URL for S3-compatible services such as MinIO), `gs://BUCKET/PREFIX`,
or any other string as a local folder. Credentials come from the standard environment of each service
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, GOOGLE_APPLICATION_CREDENTIALS), read by
icechunk itself; nothing here stores a secret, so a location pickles safely to a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import icechunk

OBJECT_SCHEMES = ("s3", "gs")


def _normalise_url(url: str | Path) -> str:
    text = str(url)
    # pathlib collapses "s3://b/p" to "s3:/b/p"; accept both spellings.
    for scheme in OBJECT_SCHEMES:
        if text.startswith(f"{scheme}:/") and not text.startswith(f"{scheme}://"):
            return f"{scheme}://{text[len(scheme) + 2:]}"
    return text


@dataclass(frozen=True)
class StoreLocation:
    """A store's address plus the options to reach it; `snapshot` pins reads to one version (id or tag)."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    branch: str = "main"
    snapshot: str | None = None

    @classmethod
    def of(cls, where: "StoreLocation | str | Path", endpoint_url: str | None = None, region: str | None = None,
           snapshot: str | None = None) -> "StoreLocation":
        if isinstance(where, StoreLocation):
            changes: dict[str, Any] = {}
            if endpoint_url is not None:
                changes["endpoint_url"] = endpoint_url
            if region is not None:
                changes["region"] = region
            if snapshot is not None:
                changes["snapshot"] = snapshot
            return replace(where, **changes) if changes else where
        url = _normalise_url(where)
        if not url.startswith(tuple(f"{s}://" for s in OBJECT_SCHEMES)):
            url = str(Path(url))
        return cls(url=url, endpoint_url=endpoint_url, region=region, snapshot=snapshot)

    @property
    def scheme(self) -> str:
        head, sep, _ = self.url.partition("://")
        return head if sep and head in OBJECT_SCHEMES else "file"

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ValueError(f"store {self.url} is not a local folder")
        return Path(self.url)

    def bucket_and_prefix(self) -> tuple[str, str]:
        rest = self.url.split("://", 1)[1]
        bucket, _, prefix = rest.partition("/")
        return bucket, prefix.strip("/")

    def at(self, snapshot: str | None) -> "StoreLocation":
        return replace(self, snapshot=snapshot)

    def storage(self) -> icechunk.Storage:
        """The icechunk storage for this location (object storage reads its credentials from the environment)."""
        if self.is_local:
            return icechunk.local_filesystem_storage(str(self.local_path.resolve()))
        bucket, prefix = self.bucket_and_prefix()
        if not bucket:
            raise ValueError(f"store.path {self.url} names no bucket")
        if self.scheme == "s3":
            endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if endpoint and not region:
                region = "us-east-1"  # S3-compatible services accept any region; icechunk needs one
            return icechunk.s3_storage(
                bucket=bucket, prefix=prefix or None, region=region, endpoint_url=endpoint,
                allow_http=bool(endpoint and endpoint.startswith("http://")),
                force_path_style=bool(endpoint), from_env=True)
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None, from_env=True)

    def __str__(self) -> str:
        return self.url
