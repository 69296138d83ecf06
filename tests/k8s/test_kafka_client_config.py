"""darkpool/kafka_client.py: the settings -> librdkafka and Java client properties (pure; the real
broker checks are in test_k8s_kafka_auth.py)."""

from __future__ import annotations

import dataclasses

import pytest

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config, java_client_config


def scram(**more: str) -> Settings:
    return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                    kafka_sasl_username="darkpool-serving", kafka_sasl_password='p"a\\ss', **more)


def test_plaintext_adds_nothing() -> None:
    assert client_config(Settings()) == {} == java_client_config(Settings())


def test_scram_over_plaintext() -> None:
    assert client_config(scram()) == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                      "sasl.username": "darkpool-serving", "sasl.password": 'p"a\\ss'}
    java = java_client_config(scram())
    assert java["security.protocol"] == "SASL_PLAINTEXT" and java["sasl.mechanism"] == "SCRAM-SHA-512"
    assert java["sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                        'username="darkpool-serving" password="p\\"a\\\\ss";')


def test_tls_with_a_ca_file() -> None:
    settings = scram(kafka_ssl_ca_file="/etc/kafka-ca/ca.crt")
    settings = dataclasses.replace(settings, kafka_security_protocol="sasl_ssl")
    assert client_config(settings)["ssl.ca.location"] == "/etc/kafka-ca/ca.crt"
    java = java_client_config(settings)
    assert (java["security.protocol"], java["ssl.truststore.type"], java["ssl.truststore.location"]) == (
        "SASL_SSL", "PEM", "/etc/kafka-ca/ca.crt")


def test_environment_reaches_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKPOOL_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("DARKPOOL_KAFKA_SASL_USERNAME", "darkpool-feed")
    monkeypatch.setenv("DARKPOOL_KAFKA_SASL_PASSWORD", "secret")
    assert client_config(load_settings())["sasl.username"] == "darkpool-feed"
    assert client_config(load_settings())["sasl.mechanism"] == "SCRAM-SHA-512"  # the default mechanism


@pytest.mark.parametrize(("settings", "message"), [
    (Settings(kafka_security_protocol="SASL_PLAINTEXT"), "needs a user and a password"),
    (Settings(kafka_security_protocol="KERBEROS"), "is not one of"),
    (Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI", kafka_sasl_username="u",
              kafka_sasl_password="p"), "DARKPOOL_KAFKA_SASL_MECHANISM"),
])
def test_bad_settings_are_refused(settings: Settings, message: str) -> None:
    for build in (client_config, java_client_config):
        with pytest.raises(DarkpoolError, match=message):
            build(settings)
