"""Where the product keeps files: local folders or S3-compatible object storage.

A *location* is a local path (:class:`~pathlib.Path`) or an ``s3://bucket/key``
URI (a ``str``). The Parquet dataset and Flink's checkpoints and savepoints can
live at either (Settings ``dataset_uri`` and ``flink_state_uri``); the S3
endpoint and credentials come from Settings (``s3_*``, i.e. the
``DARKPOOL_S3_*`` environment variables), never from a command line.

A file appears whole or not at all, on both kinds of storage:

- local: written under a hidden temporary name, then renamed into place
  (``os.replace`` is atomic within a file system);
- S3: one ``PUT`` of the complete object (an object becomes visible only when
  its PUT completes; there is no rename on S3). pyarrow 16's S3 output stream
  (the newest pyarrow Beam 2.62 allows) starts a *multipart* upload for every
  object, even a 1 MB one (measured against S3Proxy: ``POST ?uploads``, ``PUT
  ?partNumber=1``, ``POST ?uploadId``), so :meth:`S3Client.put` sends the PUT
  itself, signed with AWS Signature Version 4. Reads and listings go through
  ``pyarrow.fs.S3FileSystem`` (path-style requests to the endpoint).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError

S3_SCHEME = "s3://"
Location = Path | str
# a single PUT may carry up to 5 GiB (S3's limit); the product's files are a few MB
MAX_PUT_BYTES = 5 * 1024**3
PUT_ATTEMPTS = 3


# --- locations -------------------------------------------------------------------
def is_s3(location: Location | None) -> bool:
    """True for an ``s3://`` URI."""
    return location is not None and str(location).startswith(S3_SCHEME)


def parse_location(text: str) -> Location:
    """A command-line location: an ``s3://bucket/prefix`` URI stays a string, anything else is a Path."""
    if is_s3(text):
        bucket, _ = split_s3_uri(text)
        if not bucket:
            raise ValueError(f"{text!r}: an S3 URI needs a bucket (s3://bucket/prefix)")
        return text.rstrip("/")
    return Path(text)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = uri[len(S3_SCHEME):] if uri.startswith(S3_SCHEME) else uri
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")


def join(location: Location, *parts: str) -> Location:
    """A child of a location: ``join("s3://b/p", "x", "y")`` is ``"s3://b/p/x/y"``; a Path joins as a Path."""
    if is_s3(location):
        return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(location).joinpath(*parts)


def as_uri(location: Location) -> str:
    """The location as a URI: ``s3://...`` as it is, a local path as ``file:///...``."""
    return str(location) if is_s3(location) else Path(location).absolute().as_uri()


def fs_path(location: Location) -> str:
    """The path pyarrow file systems take: ``bucket/key`` for S3, the absolute path for local files."""
    if is_s3(location):
        bucket, key = split_s3_uri(str(location))
        return f"{bucket}/{key}" if key else bucket
    return str(Path(location).absolute())


def buckets_of(settings: Settings) -> list[str]:
    """The buckets the configuration names: ``s3_bucket`` and those of the state and dataset URIs."""
    names = [settings.s3_bucket]
    names += [split_s3_uri(uri)[0] for uri in (settings.flink_state_uri, settings.dataset_uri) if is_s3(uri)]
    return list(dict.fromkeys(n for n in names if n))


# --- AWS Signature Version 4 (pure) ----------------------------------------------
def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str = "s3") -> bytes:
    """SigV4's derived key for one day (YYYYMMDD), region and service."""
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def sigv4_authorization(method: str, path: str, query: str, headers: dict[str, str], payload_sha256: str,
                        amz_date: str, region: str, access_key: str, secret_key: str,
                        service: str = "s3") -> str:
    """The ``Authorization`` header of a request (AWS Signature Version 4, every given header signed).

    ``path`` is the URI-encoded path as sent; ``query`` the canonical query string
    (sorted, encoded; empty for a PUT); ``headers`` must include ``host`` and
    ``x-amz-date`` (= ``amz_date``, ``YYYYMMDDTHHMMSSZ``).
    """
    canonical = {name.lower().strip(): " ".join(value.strip().split()) for name, value in headers.items()}
    signed = ";".join(sorted(canonical))
    request = "\n".join([method, path, query, *(f"{name}:{canonical[name]}" for name in sorted(canonical)), "",
                         signed, payload_sha256])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, amz_date[:8], region, service), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


# --- the S3 client ------------------------------------------------------------------
@dataclass(frozen=True)
class S3Client:
    """An S3-compatible endpoint and its credentials (from Settings): single-PUT writes, pyarrow reads."""

    endpoint: str  # http(s)://host[:port]
    region: str
    access_key: str
    secret_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Client:
        return cls(settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key, settings.s3_secret_key)

    def filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` on this endpoint, path-style (for reads and listings)."""
        from pyarrow import fs as pafs  # noqa: PLC0415 (pyarrow's S3 support initialises the AWS SDK)

        parsed = urllib.parse.urlparse(self.endpoint)
        credentials = ({"access_key": self.access_key, "secret_key": self.secret_key}
                       if self.access_key and self.secret_key else {})
        return pafs.S3FileSystem(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https",
                                 region=self.region, force_virtual_addressing=False, **credentials,
                                 connect_timeout=5, request_timeout=60)

    def object_url(self, bucket: str, key: str) -> str:
        """The path-style URL of an object: <endpoint>/<bucket>/<key>, each key segment URI-encoded."""
        return f"{self.endpoint}/{urllib.parse.quote(bucket)}/{urllib.parse.quote(key, safe='/~')}"

    def put(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` as the object ``uri`` with ONE PUT request (the object appears whole or not at all).

        The payload is signed (its SHA-256 is part of the signature) and carries a
        Content-MD5, so the server rejects a body that was cut or changed on the way.
        A failed attempt is retried with the same complete body (a PUT is idempotent).
        """
        if len(data) > MAX_PUT_BYTES:
            raise DarkpoolError(f"{uri}: {len(data):,} bytes is more than one S3 PUT can carry")
        bucket, key = split_s3_uri(uri)
        status, body = self._send("PUT", self.object_url(bucket, key), data, content_type)
        if status != 200:
            raise DarkpoolError(f"PUT {uri} to {self.endpoint} failed: HTTP {status}: {body[:500]}",
                                hint="check DARKPOOL_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY and that the bucket exists "
                                     "(the local S3Proxy: `darkpool s3 start`)")

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket unless this account already owns it."""
        status, body = self._send("PUT", f"{self.endpoint}/{urllib.parse.quote(bucket)}", b"")
        if status != 200 and "BucketAlreadyOwnedByYou" not in body:
            raise DarkpoolError(f"creating the bucket {bucket} on {self.endpoint} failed: HTTP {status}: {body[:300]}")

    def _send(self, method: str, url: str, data: bytes,
              content_type: str = "application/octet-stream") -> tuple[int, str]:
        """One signed request, retried on connection errors and 5xx answers; (status, body text)."""
        if not (self.access_key and self.secret_key):
            raise DarkpoolError("writing to S3 needs credentials: DARKPOOL_S3_ACCESS_KEY and DARKPOOL_S3_SECRET_KEY")
        parsed = urllib.parse.urlparse(url)
        failure = ""
        for attempt in range(1, PUT_ATTEMPTS + 1):
            request = urllib.request.Request(url, data=data, method=method,
                                             headers=self._signed_headers(method, parsed, data, content_type))
            try:
                with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (the configured endpoint)
                    return response.status, response.read().decode(errors="replace")
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read().decode(errors="replace")
                if status < 500:
                    return status, body  # a client error (credentials, bucket) does not go away by retrying
                failure = f"HTTP {status}: {body[:300]}"
            except (urllib.error.URLError, OSError) as exc:
                failure = str(exc)
            time.sleep(0.5 * attempt)
        raise DarkpoolError(f"{method} {url} failed {PUT_ATTEMPTS} times: {failure}",
                            hint=f"is the S3 endpoint {self.endpoint} up? (the local S3Proxy: `darkpool s3 status`)")

    def _signed_headers(self, method: str, parsed: urllib.parse.ParseResult, data: bytes,
                        content_type: str) -> dict[str, str]:
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        payload_sha256 = hashlib.sha256(data).hexdigest()
        signed = {"host": parsed.netloc, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date,
                  "content-md5": base64.b64encode(hashlib.md5(data).digest()).decode()}  # noqa: S324 (S3's checksum)
        authorization = sigv4_authorization(method, parsed.path, "", signed, payload_sha256, amz_date,
                                            self.region, self.access_key, self.secret_key)
        return {**signed, "content-type": content_type, "authorization": authorization}


def s3_client(settings: Settings) -> S3Client:
    return S3Client.from_settings(settings)


# --- files ------------------------------------------------------------------------------
def write_atomically(directory: Location, name: str, data: bytes, client: S3Client | None = None) -> Location:
    """Write ``data`` as ``directory/name`` so that a reader sees the whole file or none of it.

    Local: a hidden temporary file (``.<name>.tmp``) renamed into place. S3: one PUT
    (``client`` is required for an s3:// directory).
    """
    target = join(directory, name)
    if is_s3(directory):
        if client is None:
            raise DarkpoolError(f"writing {target} needs an S3 client")
        client.put(str(target), data)
        return target
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return target


def list_names(location: Location, settings: Settings) -> list[str]:
    """The names of the entries directly under a location (files and folders; empty when there is none)."""
    if not is_s3(location):
        folder = Path(location)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    from pyarrow import fs as pafs  # noqa: PLC0415

    selector = pafs.FileSelector(fs_path(location), allow_not_found=True, recursive=False)
    try:
        infos = s3_client(settings).filesystem().get_file_info(selector)
    except OSError as exc:
        raise DarkpoolError(f"cannot list {location}: {exc}", hint=f"is the S3 endpoint "
                            f"{settings.s3_endpoint_url} up (`darkpool s3 status`)?") from exc
    return sorted(info.base_name for info in infos)


def is_file(location: Location, settings: Settings) -> bool:
    """True when the location is an existing file (or S3 object)."""
    if not is_s3(location):
        return Path(location).is_file()
    from pyarrow import fs as pafs  # noqa: PLC0415

    try:
        return s3_client(settings).filesystem().get_file_info(fs_path(location)).type == pafs.FileType.File
    except OSError as exc:
        raise DarkpoolError(f"cannot read {location}: {exc}") from exc
