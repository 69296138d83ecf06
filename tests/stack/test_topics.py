"""The product's topics: partitions and retention (compaction on the window-keyed outputs and the alerts)."""

from __future__ import annotations

from darkpool.stack.topics import create_topics, describe_topics, product_topic_specs


def test_product_topics_are_created_once_with_their_policies(kafka_bootstrap: str, unique_topic: str) -> None:
    names = {"trades": f"{unique_topic}.trades", "deadletter": f"{unique_topic}.deadletter",
             "liquidity": f"{unique_topic}.liquidity", "market": f"{unique_topic}.market",
             "alerts": f"{unique_topic}.alerts"}
    specs = product_topic_specs(**names, partitions=3)

    assert set(create_topics(kafka_bootstrap, specs).values()) == {"created"}
    assert set(create_topics(kafka_bootstrap, specs).values()) == {"exists"}

    described = {row["topic"]: row for row in describe_topics(kafka_bootstrap, list(specs))}
    assert described[names["trades"]]["partitions"] == 3
    assert described[names["trades"]]["cleanup.policy"] == "delete"
    assert described[names["deadletter"]]["partitions"] == 1
    assert described[names["liquidity"]]["cleanup.policy"] == "compact"
    assert described[names["market"]]["cleanup.policy"] == "compact"
    assert described[names["alerts"]]["cleanup.policy"] == "compact"
    assert described[names["alerts"]]["partitions"] == 3
    assert all(row["records"] == 0 for row in described.values())
