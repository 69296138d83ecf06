"""How the product's Kafka clients authenticate: one place for the feed, serving, the topic tools and the
pipeline's KafkaIO.

The settings (``darkpool/config.py``: ``kafka_security_protocol``, ``kafka_sasl_mechanism``,
``kafka_sasl_username``, ``kafka_sasl_password``, ``kafka_ssl_ca_file``; env ``DARKPOOL_KAFKA_*``) become
client properties twice: :func:`client_config` for librdkafka (confluent-kafka: feed, serving, the
admin and offset tools) and :func:`java_client_config` for the Java clients inside KafkaIO (the
pipeline's reader and writers, which run in the Flink TaskManagers). Empty settings give no properties
at all, so the local PLAINTEXT broker is unchanged. In the prod overlay each client gets the SCRAM-SHA-512
user of its KafkaUser (Strimzi writes the password to a Secret of the user's name).
"""

from __future__ import annotations

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
JAAS_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


def _checked(settings: Settings) -> tuple[str, str]:
    """(protocol, mechanism) of the settings, or a DarkpoolError saying which setting is wrong."""
    protocol = settings.kafka_security_protocol.strip().upper() or "PLAINTEXT"
    if protocol not in PROTOCOLS:
        raise DarkpoolError(f"DARKPOOL_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol!r} is not one of "
                            f"{', '.join(PROTOCOLS)}")
    mechanism = settings.kafka_sasl_mechanism.strip().upper() or "SCRAM-SHA-512"
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise DarkpoolError(f"DARKPOOL_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism!r} is not one of "
                                f"{', '.join(MECHANISMS)}")
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise DarkpoolError(f"Kafka {protocol} needs a user and a password",
                                hint="set DARKPOOL_KAFKA_SASL_USERNAME and DARKPOOL_KAFKA_SASL_PASSWORD")
    return protocol, mechanism


def client_config(settings: Settings | None = None) -> dict[str, str]:
    """librdkafka (confluent-kafka) properties for the configured authentication; {} for PLAINTEXT."""
    return _auth_config(settings or load_settings(), java=False)


def java_client_config(settings: Settings | None = None) -> dict[str, str]:
    """Java Kafka client properties (KafkaIO's consumer and producer) for the same authentication."""
    return _auth_config(settings or load_settings(), java=True)


def _jaas_quote(text: str) -> str:
    """A value inside a JAAS option's double quotes (backslash and quote escaped)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _auth_config(settings: Settings, java: bool) -> dict[str, str]:
    """The authentication properties in one client's dialect: the SASL credentials as librdkafka's
    ``sasl.username``/``sasl.password`` or Java's ``sasl.jaas.config``, the CA file as librdkafka's
    ``ssl.ca.location`` or Java's PEM trust store."""
    protocol, mechanism = _checked(settings)
    if protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = mechanism
        user, password = settings.kafka_sasl_username, settings.kafka_sasl_password
        if java:
            config["sasl.jaas.config"] = (f'{JAAS_MODULES[mechanism]} required username="{_jaas_quote(user)}" '
                                          f'password="{_jaas_quote(password)}";')
        else:
            config.update({"sasl.username": user, "sasl.password": password})
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_file:
        if java:
            config.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": settings.kafka_ssl_ca_file})
        else:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_file
    return config
