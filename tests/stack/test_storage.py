"""Locations, the SigV4 signer and the object-storage configuration (no server; see
tests/pipeline/test_object_storage.py for the real S3Proxy)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack.s3 import flink_s3_configuration, s3_services, s3proxy_properties, s3proxy_service
from darkpool.storage import as_uri, buckets_of, join, parse_location, sigv4_authorization, split_s3_uri


def test_sigv4_matches_the_aws_documentation_example() -> None:
    """AWS's published "PUT Object" example of Signature Version 4 (single chunk, signed payload)."""
    payload_sha256 = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    assert payload_sha256 == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {"Host": "examplebucket.s3.amazonaws.com", "Date": "Fri, 24 May 2013 00:00:00 GMT",
               "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": payload_sha256}
    authorization = sigv4_authorization("PUT", "/test%24file.text", "", headers, payload_sha256,
                                        "20130524T000000Z", "us-east-1", "AKIAIOSFODNN7EXAMPLE",
                                        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")


def test_locations() -> None:
    assert parse_location("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert parse_location("some/dir") == Path("some/dir")
    with pytest.raises(ValueError, match="bucket"):
        parse_location("s3:///key")
    assert split_s3_uri("s3://bucket/a/b") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    assert join("s3://bucket/p", "liquidity", "date=2026-11-25") == "s3://bucket/p/liquidity/date=2026-11-25"
    assert join(Path("/data"), "liquidity") == Path("/data/liquidity")
    assert as_uri("s3://b/k") == "s3://b/k" and as_uri(Path("/data/x")) == "file:///data/x"


def test_local_files_stay_the_default(settings: Settings) -> None:
    local = dataclasses.replace(settings, flink_state_uri="", dataset_uri="")
    assert flink.checkpoint_location(local) == flink.checkpoint_dir(local)
    assert local.dataset_location == local.parquet_dir
    assert not local.uses_local_s3 and s3_services(local) == []
    conf = flink.flink_configuration(local)
    assert conf["state.checkpoints.dir"] == flink.checkpoint_dir(local).as_uri()
    assert conf["state.savepoints.dir"] == flink.savepoint_dir(local).as_uri()


def test_state_and_dataset_on_s3(settings: Settings) -> None:
    on_s3 = dataclasses.replace(settings, flink_state_uri="s3://state-bucket/flink", dataset_uri="s3://lake/parquet",
                                s3_endpoint="", s3_port=19000, s3_bucket="darkpool")
    assert flink.checkpoint_location(on_s3) == "s3://state-bucket/flink/checkpoints"
    assert flink.savepoint_location(on_s3) == "s3://state-bucket/flink/savepoints"
    assert on_s3.dataset_location == "s3://lake/parquet"
    assert buckets_of(on_s3) == ["darkpool", "state-bucket", "lake"]
    assert on_s3.uses_local_s3 and [s.name for s in s3_services(on_s3)] == ["s3proxy"]
    conf = flink.flink_configuration(on_s3)
    assert conf["state.checkpoints.dir"] == "s3://state-bucket/flink/checkpoints"
    assert conf["state.savepoints.dir"] == "s3://state-bucket/flink/savepoints"
    assert conf["s3.endpoint"] == "http://127.0.0.1:19000" and conf["s3.path.style.access"] == "true"
    assert conf["s3.access-key"] == on_s3.s3_access_key and conf["s3.secret-key"] == on_s3.s3_secret_key
    assert conf["s3.ssl.enabled"] == "false"
    # a remote endpoint: no local S3Proxy; https; no credentials = the provider chain of the plugin
    remote = dataclasses.replace(on_s3, s3_endpoint="https://s3.eu-west-1.amazonaws.com", s3_access_key="",
                                 s3_secret_key="")
    assert not remote.uses_local_s3 and s3_services(remote) == []
    options = flink_s3_configuration(remote)
    assert options["s3.ssl.enabled"] == "true" and "s3.access-key" not in options


def test_s3proxy_properties_hold_the_credentials_not_the_command_line(settings: Settings) -> None:
    properties = s3proxy_properties(settings)
    assert f"s3proxy.identity={settings.s3_access_key}" in properties
    assert f"s3proxy.credential={settings.s3_secret_key}" in properties
    assert "jclouds.provider=filesystem-nio2" in properties
    argv = s3proxy_service(settings).command()  # writes the properties file (owner-only) and returns the argv
    assert settings.s3_secret_key not in " ".join(argv)
    properties_file = Path(argv[argv.index("--properties") + 1])
    assert properties_file.read_text() == properties and properties_file.stat().st_mode & 0o077 == 0
