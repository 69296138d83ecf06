"""Bad input into the trades topic, fuzzed: every bad record is dead-lettered with its reason and position.

Two layers:

- property tests (hypothesis, derandomized, bounded) of the pure functions: any bytes, any JSON
  value, any mutation of a good trade, any key and record timestamp either parse into a trade
  within the contract's limits or raise ``Rejected`` with a reason of
  contracts.DEADLETTER_REASONS, and the dead letter always encodes (JSON, Kafka key and value,
  bounded size) with the raw bytes recoverable from it;
- a generated corpus (:func:`fuzz_corpus`, a fixed seed): a few hundred bad records of every class
  (random bytes, truncated JSON, NaN/Infinity, huge numbers, wrong types, very long strings,
  non-UTF-8 keys and values, empty values, deep nesting, duplicated keys, ...) mixed with good
  ones, each labelled by construction with the reason it must get. It is published to a real
  Kafka topic and run through the real pipeline twice: on the DirectRunner over the topic's offset
  range (the records as the broker holds them: partitions, offsets, CreateTime timestamps, keys), and
  on the real Flink stack (the Java Kafka reader, the Kafka sinks), where the job must end with 0
  restarts. Both must dead-letter exactly the bad records, by (partition, offset), with their
  reasons, and reconcile: in = aggregated + dead-lettered + too late.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_testkit import final_panes, run_analytics

from darkpool.contracts import (
    DEADLETTER_FIELDS,
    DEADLETTER_REASONS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SYMBOL_LENGTH,
    TRADES_TOPIC,
    format_event_time,
    load_venues,
)
from pipeline.codec import decode_record_batch, encode_record_batch
from pipeline.options import PipelineConfig
from pipeline.records import SourceRecord
from pipeline.transforms.format import deadletter_kv
from pipeline.transforms.parse import (
    KEY_BASE64_PREFIX,
    MAX_RAW_BYTES,
    ParseTally,
    Rejected,
    deadletter_record,
    element_seconds,
    parse_records,
    parse_trade,
)

VENUES = frozenset(load_venues())
DAY = 86_400_000
T0 = 1_795_615_200_000  # 2026-11-25T14:00:00Z
MAX_DEADLETTER_BYTES = 200_000  # far below a Kafka record's 1 MiB default limit
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=250,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def good_trade(rng: random.Random, event_ms: int, n: int) -> dict:
    return {"trade_id": f"F-{n:06d}", "event_time": format_event_time(event_ms),
            "symbol": rng.choice(["AAPL", "MSFT", "NVDA", "JPM"]), "venue": rng.choice(sorted(VENUES)),
            "price": round(rng.uniform(1.0, 900.0), 2), "quantity": rng.randint(1, 30_000),
            "side": rng.choice(["B", "S", None])}


# --- the property tests of the pure functions ---------------------------------------------
def check_outcome(value: bytes | None, key: bytes | None, record_ms: int) -> str | None:
    """Parse one record; assert the trade keeps the contract's limits, or the dead letter is sound.

    Returns the reason (None for a valid trade).
    """
    try:
        trade = parse_trade(value, record_ms, 5, VENUES, DAY)
    except Rejected as rejected:
        reason = rejected.reason
        assert reason in DEADLETTER_REASONS
        letter = deadletter_record(reason, rejected.detail, value, key, TRADES_TOPIC, 3, 5)
        assert set(letter) == {*DEADLETTER_FIELDS, "detail"}
        kafka_key, kafka_value = deadletter_kv(letter)  # what the Kafka sink writes: must encode
        assert len(kafka_key) + len(kafka_value) < MAX_DEADLETTER_BYTES
        assert orjson.loads(kafka_value) == letter
        assert_raw_recoverable(letter, value, key)
        return reason
    assert 0 < len(trade.symbol) <= MAX_SYMBOL_LENGTH and trade.venue in VENUES
    assert 0.0 < trade.price <= MAX_PRICE and 0 < trade.quantity <= MAX_QUANTITY
    assert type(trade.quantity) is int and trade.side in ("B", "S", None)
    assert abs(trade.event_ms - record_ms) <= DAY
    orjson.dumps(trade._asdict())  # the trade's text fields encode (outputs and too-late letters do)
    return None


def assert_raw_recoverable(letter: dict, value: bytes | None, key: bytes | None) -> None:
    """The dead letter's raw_value / raw_key give back the source bytes (their kept part)."""
    encoding = letter["raw_encoding"]
    if value == b"" and letter["raw_value"] is None:  # Kafka clients may hand an empty value as null
        value = None
    if value is None:
        assert letter["raw_value"] is None and encoding == "none"
    else:
        truncated = encoding.endswith("+truncated")
        assert truncated == (len(value) > MAX_RAW_BYTES)
        raw = letter["raw_value"]
        kept = base64.b64decode(raw) if encoding.startswith("base64") else raw.encode("utf-8")
        assert value.startswith(kept)
        assert MAX_RAW_BYTES - 3 <= len(kept) <= MAX_RAW_BYTES if truncated else kept == value
    raw_key = letter["raw_key"]
    if key is None:
        assert raw_key is None
    elif raw_key.startswith(KEY_BASE64_PREFIX):
        assert key.startswith(base64.b64decode(raw_key.removeprefix(KEY_BASE64_PREFIX)))
    else:
        assert key.startswith(raw_key.encode("utf-8"))


def json_bytes(data: object) -> bytes:
    """JSON text of any value, integers beyond 64 bits included (which orjson.dumps refuses)."""
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELD_VALUES = (JSON_VALUES | st.text(min_size=30, max_size=300) | st.sampled_from(
    ["B", "S", "", " ", "UBSA", "ubsa", "2026-11-25T14:00:00.000Z", "2026-11-25T14:00:00.\u00b2\u00b2\u00b2Z",
     "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "NaN", "1e400", "100"])
                | st.integers(0, 2**64) | st.sampled_from([0.0, -0.0, 1e-300, 1e300, 1e10, 1e30, 2.0**63]))
KEYS = st.none() | st.binary(max_size=64) | st.text(max_size=20).map(str.encode) | st.just(b"base64:AAPL")
RECORD_MS = st.integers(-(2**63), 2**63 - 1) | st.integers(T0 - 2 * DAY, T0 + 2 * DAY)


@PROPERTY
@given(st.binary(max_size=2_000), KEYS, RECORD_MS)
def test_any_bytes_are_a_trade_or_a_sound_dead_letter(value, key, record_ms):
    check_outcome(value, key, record_ms)


@PROPERTY
@given(JSON_VALUES, KEYS)
def test_any_json_value_is_a_trade_or_a_sound_dead_letter(data, key):
    check_outcome(json_bytes(data), key, T0)


@PROPERTY
@given(st.dictionaries(st.sampled_from(["trade_id", "event_time", "symbol", "venue", "price", "quantity", "side",
                                        "extra"]), FIELD_VALUES, max_size=4),
       st.sets(st.sampled_from(["trade_id", "event_time", "symbol", "venue", "price", "quantity", "side"]),
               max_size=2), KEYS)
def test_any_mutation_of_a_good_trade_is_a_trade_or_a_sound_dead_letter(changes, dropped, key):
    base = good_trade(random.Random(1), T0, 1)
    data = {k: v for k, v in {**base, **changes}.items() if k not in dropped}
    reason = check_outcome(json_bytes(data), key, T0)
    if dropped:
        assert reason == "missing_field"


def test_a_huge_record_gives_a_bounded_dead_letter():
    rng = random.Random(3)
    for size in (MAX_RAW_BYTES - 1, MAX_RAW_BYTES, MAX_RAW_BYTES + 1, 300_000, 2_000_000):
        value = b"\xff" + rng.randbytes(size)
        assert check_outcome(value, rng.randbytes(rng.randint(0, 5_000)), T0) == "bad_json"


def test_huge_text_values_are_cut_at_a_character_boundary():
    value = ("\u00e9" * (MAX_RAW_BYTES // 2 + 10)).encode()  # 2-byte characters: the cut falls inside one
    letter = deadletter_record("bad_json", "x" * 10_000, b"{" + value, None, TRADES_TOPIC, 0, 1)
    assert letter["raw_encoding"] == "utf-8+truncated"
    assert len(letter["raw_value"].encode()) == MAX_RAW_BYTES - 1
    assert len(letter["detail"]) < 1_200 and "of 65,557 bytes" in letter["detail"]


def test_record_times_outside_the_calendar_still_give_a_dead_letter_and_an_element_time():
    for record_ms in (-(2**63), -1, 2**62, 2**63 - 1):
        assert check_outcome(orjson.dumps(good_trade(random.Random(2), T0, 1)), None, record_ms) == \
            "absurd_event_time"
        assert abs(element_seconds(record_ms)) <= 2**62 / 1e6


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**63 - 1),
                          KEYS, st.none() | st.binary(max_size=300)), max_size=20))
def test_a_batch_of_any_records_reconciles(rows):
    """parse_records over any records: trades + dead letters = records, counted by the tally."""
    records = [SourceRecord(TRADES_TOPIC, *row) for row in rows]
    decoded = list(decode_record_batch(encode_record_batch(records)))
    tally = ParseTally()
    trades, dead = parse_records(decoded, TRADES_TOPIC, VENUES, DAY, tally)
    assert len(trades) + len(dead) == len(rows) == tally.records
    assert sum(tally.rejected.values()) == len(dead)
    assert Counter(d["reason"] for d in dead) == Counter(tally.rejected)
    for letter in dead:
        orjson.dumps(letter)


@PROPERTY
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), st.integers(-(2**63), 2**63 - 1),
                          KEYS, st.none() | st.binary(max_size=50)), min_size=1, max_size=5), st.data())
def test_a_cut_record_batch_is_an_error_never_a_short_record(rows, data):
    """The codec: a batch cut anywhere gives its whole records, then ValueError if the cut is inside one."""
    records = [SourceRecord(TRADES_TOPIC, *row) for row in rows]
    batch = encode_record_batch(records)
    cut = data.draw(st.integers(0, len(batch)))
    boundaries = [len(encode_record_batch(records[:i])) for i in range(len(records) + 1)]
    decoded = []
    try:
        for record in decode_record_batch(batch[:cut]):
            decoded.append(record)
    except ValueError:
        assert cut not in boundaries
    else:
        assert cut in boundaries
    assert decoded == [(r.partition, r.offset, r.timestamp, r.key, r.value) for r in records[:len(decoded)]]


# --- the corpus -------------------------------------------------------------------------
@dataclass(frozen=True)
class FuzzRecord:
    """One record of the corpus and the dead-letter reason it must get (None: a valid trade)."""

    key: bytes | None
    value: bytes | None
    timestamp: int  # the record's CreateTime, epoch ms
    reason: str | None
    kind: str  # the generator that made it


def _json(data: dict) -> bytes:
    return orjson.dumps(data)


def _with_raw(data: dict, field: str, raw: bytes) -> bytes:
    """The trade's JSON with one field's value replaced by raw JSON text (NaN, 1e400, nesting, ...)."""
    return _json({k: v for k, v in data.items() if k != field})[:-1] + b',"' + field.encode() + b'":' + raw + b"}"


def _bad(rng: random.Random, trade: dict) -> tuple[str, bytes | None, str]:
    """One bad value made from a good trade: (kind, value, the reason it must get)."""
    kind = rng.choice(BAD_KINDS)
    field = rng.choice(["trade_id", "event_time", "symbol", "venue", "price", "quantity", "side"])
    match kind:
        case "random_bytes":
            return kind, b"\xff" + rng.randbytes(rng.randint(0, 300)), "bad_json"
        case "random_text":
            alphabet = "abc{}[]:,\"\\ 0123456789\u00e9\u4e2d\U0001f600"
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
            return kind, ("@" + text).encode(), "bad_json"
        case "truncated_json":
            whole = _json(trade)
            return kind, whole[:rng.randint(1, len(whole) - 1)], "bad_json"
        case "nan_infinity":
            return kind, _with_raw(trade, rng.choice(["price", "quantity"]),
                                   rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])), "bad_json"
        case "huge_number":
            if rng.random() < 0.5:
                return kind, _json({**trade, "quantity": rng.choice([MAX_QUANTITY + 1, 2**63, 2**64 - 1])}), \
                    "out_of_range"
            if rng.random() < 0.5:
                return kind, _with_raw(trade, "quantity", b"1" + b"0" * rng.randint(20, 300)), "out_of_range"
            return kind, _json({**trade, "price": rng.choice([MAX_PRICE * 1.5, 1e300, 1.7e308])}), "out_of_range"
        case "wrong_type":
            wrong = {"trade_id": [12, None, [], {}], "symbol": [42, None, True, [], ""], "venue": [1, None, {}],
                     "price": ["10.5", True, None, [1], {}], "quantity": ["100", 1.5, True, None, []],
                     "event_time": [T0, None, [], 1.5], "side": [1, [], True, "b", ""]}
            reason = "bad_side" if field == "side" else "bad_type"
            return kind, _json({**trade, field: rng.choice(wrong[field])}), reason
        case "long_string":
            n = rng.choice([MAX_SYMBOL_LENGTH + 1, 1_000, 100_000])
            target = rng.choice(["symbol", "trade_id", "venue", "event_time", "side"])
            reason = {"symbol": "too_long", "trade_id": "too_long", "venue": "unknown_venue",
                      "event_time": "bad_event_time", "side": "bad_side"}[target]
            if target == "trade_id":
                n = max(n, 129)
            return kind, _json({**trade, target: "A" * n}), reason
        case "non_utf8_value":
            raw = rng.choice([b'"\xff\xfeA"', b'"AA\xc3"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udc00x"'])
            if rng.random() < 0.5:
                return kind, _with_raw(trade, field, raw), "bad_json"
            return kind, _json(trade)[:-1] + b"," + raw + b':1}', "bad_json"  # a non-UTF-8 object key
        case "empty":
            value, reason = rng.choice([(None, "empty"), (b"", "empty"), (b"   ", "bad_json"), (b"{}", "missing_field"),
                                        (_json({**trade, "symbol": ""}), "bad_type"),
                                        (_json({**trade, "event_time": ""}), "bad_event_time"),
                                        (_json({**trade, "side": ""}), "bad_side")])
            return kind, value, reason
        case "deep_nesting":
            depth = rng.randint(1_100, 20_000)
            if rng.random() < 0.4:
                return kind, b"[" * depth + b"]" * depth, "bad_json"
            if rng.random() < 0.5:
                depth = rng.randint(2, 500)
                return kind, b"[" * depth + b"]" * depth, "not_an_object"
            depth = rng.randint(2, 500)
            return kind, _with_raw(trade, rng.choice(["price", "symbol"]), b"[" * depth + b"]" * depth), "bad_type"
        case "duplicated_key":
            dup, reason = rng.choice([(b'"quantity":-5', "non_positive_quantity"), (b'"venue":"ZZZZ"', "unknown_venue"),
                                      (b'"price":0', "non_positive_price"), (b'"side":"X"', "bad_side")])
            return kind, _json(trade)[:-1] + b"," + dup + b"}", reason
        case "not_an_object":
            return kind, rng.choice([b"42", b'"AAPL"', b"null", b"true", b"[]", b"[{}]", b"-0.0"]), "not_an_object"
        case "missing_field":
            return kind, _json({k: v for k, v in trade.items() if k != field}), "missing_field"
        case "non_positive":
            if rng.random() < 0.5:
                return kind, _json({**trade, "quantity": rng.choice([0, -1, -(2**63)])}), "non_positive_quantity"
            return kind, _json({**trade, "price": rng.choice([0, 0.0, -0.0, -1.5, -1e300])}), "non_positive_price"
        case "unknown_venue":
            venue = rng.choice(["ZZZZ", trade["venue"].lower(), " UBSA", "\u00dcBSA"])
            return kind, _json({**trade, "venue": venue}), "unknown_venue"
        case "bad_event_time":
            return kind, _json({**trade, "event_time": rng.choice(
                ["yesterday", "2026-13-01T00:00:00Z", "2026-11-25T25:00:00Z", "2026-11-25T14:00:00.\u00b2\u00b2\u00b2Z",
                 "\u0662\u0660\u0662\u0666-11-25"])}), "bad_event_time"
        case "absurd_event_time":
            return kind, _json({**trade, "event_time": rng.choice(
                ["1999-12-31T23:59:59.999Z", "9999-12-31T23:59:59Z", format_event_time(T0 + 3 * DAY)])}), \
                "absurd_event_time"
        case "bom":
            return kind, b"\xef\xbb\xbf" + _json(trade), "bad_json"
    raise AssertionError(kind)


BAD_KINDS = ("random_bytes", "random_text", "truncated_json", "nan_infinity", "huge_number", "wrong_type",
             "long_string", "non_utf8_value", "empty", "deep_nesting", "duplicated_key", "not_an_object",
             "missing_field", "non_positive", "unknown_venue", "bad_event_time", "absurd_event_time", "bom")


def _odd_good(rng: random.Random, trade: dict) -> tuple[str, bytes]:
    """A valid trade written in an unusual but allowed way."""
    kind = rng.choice(["plain", "plain", "plain", "padded", "duplicated_key", "unicode_symbol", "integer_price",
                       "float_quantity", "offset_time", "extra_fields"])
    match kind:
        case "padded":
            return kind, b" \n\t" + _json(trade) + b"\r\n "
        case "duplicated_key":  # the last value of a key counts (orjson, like json.loads)
            return kind, b'{"quantity":-1,"venue":"ZZZZ",' + _json(trade)[1:]
        case "unicode_symbol":
            symbol = rng.choice(["\u00c9TF", "BRK.B", "\u4e2d\u56fd", "A" * MAX_SYMBOL_LENGTH])
            return kind, _json({**trade, "symbol": symbol})
        case "integer_price":
            return kind, _json({**trade, "price": int(trade["price"]) + 1})
        case "float_quantity":
            return kind, _json({**trade, "quantity": float(trade["quantity"])})
        case "offset_time":
            return kind, _json({**trade, "event_time": trade["event_time"].replace("Z", "+00:00")})
        case "extra_fields":
            return kind, _json({**trade, "note": {"deep": [[[[1]]]], "nan_text": "NaN"}, "x": None})
    return "plain", _json(trade)


def _key(rng: random.Random, trade: dict) -> bytes | None:
    """Mostly the symbol (as the feed keys records); sometimes no key, binary or odd text."""
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.25:
        return b"\x80" + rng.randbytes(rng.randint(0, 40))  # not UTF-8
    if roll < 0.3:
        return rng.choice([b"base64:AAPL", "\u00c9TF|\u4e2d".encode(), b" ", b"K" * 5_000])
    return trade["symbol"].encode()


def fuzz_corpus(seed: int, n_good: int, n_bad: int, start_ms: int, span_ms: int) -> list[FuzzRecord]:
    """n_good valid trades and n_bad bad records (every kind of :data:`BAD_KINDS`), shuffled, with record
    times increasing evenly over [start_ms, start_ms + span_ms); a trade's event time is its record time
    minus up to 2 s. Deterministic for a seed."""
    rng = random.Random(seed)
    n = n_good + n_bad
    roles = [True] * n_good + [False] * n_bad
    rng.shuffle(roles)
    corpus = []
    for i, is_good in enumerate(roles):
        timestamp = start_ms + i * span_ms // n
        trade = good_trade(rng, timestamp - rng.randint(0, 2_000), i)
        if is_good:
            kind, value = _odd_good(rng, trade)
            reason = None
        else:
            kind, value, reason = _bad(rng, trade)
        corpus.append(FuzzRecord(_key(rng, trade), value, timestamp, reason, kind))
    # one giant record in the middle: 900 KB that are not UTF-8 (as base64 a dead letter of 1.2 MB, over the
    # Kafka producer's 1 MiB limit, had it not been cut)
    middle = corpus[n // 2].timestamp
    corpus.insert(n // 2, FuzzRecord(b"\x80giant", b"\xff" + rng.randbytes(900_000), middle, "bad_json", "giant"))
    return corpus


def assert_labels(corpus: list[FuzzRecord]) -> None:
    """Each record's label is the parse rule's outcome (and a bad one's dead letter is sound)."""
    for r in corpus:
        assert check_outcome(r.value, r.key, r.timestamp) == r.reason, (r.kind, r.value[:200] if r.value else None)


def test_the_corpus_holds_every_kind_and_its_labels_are_what_the_parse_rule_says():
    corpus = fuzz_corpus(7, n_good=400, n_bad=300, start_ms=T0, span_ms=10 * 60_000)
    kinds = Counter(r.kind for r in corpus if r.reason is not None and r.kind != "giant")
    assert set(kinds) == set(BAD_KINDS) and min(kinds.values()) >= 5
    assert any(r.key is not None and not _is_utf8(r.key) for r in corpus)
    assert any(r.value is not None and MAX_RAW_BYTES < len(r.value) < 200_000 for r in corpus)
    assert sum(1 for r in corpus if r.kind == "giant") == 1
    assert_labels(corpus)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- the corpus through the real broker -------------------------------------------------
PARTITIONS = 3


def publish_corpus(bootstrap: str, topic: str, corpus: list[FuzzRecord]) -> dict[tuple[int, int], FuzzRecord]:
    """Produce the corpus (idempotent producer, partition by index) -> {(partition, offset): record}."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 2_000_000})
    positions: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(index: int):
        def report(error, message) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                positions[index] = (message.partition(), message.offset())
        return report

    for index, record in enumerate(corpus):
        producer.produce(topic, value=record.value, key=record.key, partition=index % PARTITIONS,
                         timestamp=record.timestamp, on_delivery=delivered(index))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors and len(positions) == len(corpus), errors[:3]
    return {positions[i]: record for i, record in enumerate(corpus)}


def consume_range(bootstrap: str, topic: str) -> list[SourceRecord]:
    """Every record of the topic, as the broker holds it (partition, offset, CreateTime, key, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"fuzz-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "fetch.max.bytes": 4_000_000})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        records: list[SourceRecord] = []
        deadline = time.monotonic() + 60
        while len(records) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(records)} of {sum(ends.values())} records"
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                records.append(SourceRecord(topic, message.partition(), message.offset(), message.timestamp()[1],
                                            message.key(), message.value()))
        return records
    finally:
        consumer.close()


def assert_dead_letters_exact(dead: list[dict], labels: dict[tuple[int, int], FuzzRecord], topic: str) -> None:
    """The dead letters are exactly the bad records, each with its reason and recoverable raw bytes."""
    by_position = {(d["source_partition"], d["source_offset"]): d for d in dead}
    expected = {position: r.reason for position, r in labels.items() if r.reason is not None}
    assert {p: d["reason"] for p, d in by_position.items()} == expected
    for position, letter in by_position.items():
        assert letter["source_topic"] == topic
        assert set(letter) == {*DEADLETTER_FIELDS, "detail"}
        assert_raw_recoverable(letter, labels[position].value, labels[position].key)


@pytest.mark.stack
def test_the_corpus_through_a_kafka_offset_range_on_the_direct_runner(kafka_bootstrap, unique_topic):
    from darkpool.stack.topics import TopicSpec, create_topics

    topic = f"{unique_topic}.trades"
    create_topics(kafka_bootstrap, {topic: TopicSpec(PARTITIONS)})
    corpus = fuzz_corpus(20261201, n_good=500, n_bad=300, start_ms=T0, span_ms=12 * 60_000)
    assert_labels(corpus)
    labels = publish_corpus(kafka_bootstrap, topic, corpus)
    records = consume_range(kafka_bootstrap, topic)
    assert len(records) == len(corpus)

    config = PipelineConfig(source="kafka-range", trades_topic=topic, range_start=T0, range_end=T0 + 12 * 60_000)
    out, counters = run_analytics(beam.Create(records), config, streaming=False)

    assert_dead_letters_exact(out["deadletter"], labels, topic)
    good = sum(1 for r in corpus if r.reason is None)
    reasons = Counter(r.reason for r in corpus if r.reason is not None)
    assert counters["records_in"] == len(corpus) == counters["trades_valid"] + sum(reasons.values())
    assert counters["trades_valid"] == good
    assert {reason: counters.get(f"deadletter_{reason}", 0) for reason in reasons} == dict(reasons)
    liquidity = final_panes(out["liquidity"], ("window_start", "symbol", "venue"))
    assert sum(p["trade_count"] for p in liquidity.values()) == 5 * good  # every trade in its 5 windows, once
    print("fuzz (DirectRunner, kafka range):", {"in": len(corpus), "aggregated": good,
                                                 "dead_lettered": sum(reasons.values()), "too_late": 0,
                                                 "reasons": dict(reasons)})


# --- the corpus on the real Flink stack ---------------------------------------------------
def job_restarts(settings, job_id: str) -> int:
    """The job's ``numRestarts`` from Flink REST (the JobManager's metric fetcher answers [] until its first fetch)."""
    from darkpool.stack import flink

    deadline = time.monotonic() + 60
    while True:
        metrics = flink.rest_request("GET", f"{settings.flink_rest_url}/jobs/{job_id}/metrics?get=numRestarts")
        values = [m["value"] for m in metrics if m.get("id") == "numRestarts"]
        if values:
            return int(values[0])
        assert time.monotonic() < deadline, "Flink REST never reported numRestarts"
        time.sleep(2)


def job_exceptions(settings, job_id: str) -> list:
    """The job's exception history from Flink REST (empty: no task ever failed)."""
    from darkpool.stack import flink

    answer = flink.rest_get(settings, f"/jobs/{job_id}/exceptions")
    return answer.get("exceptionHistory", {}).get("entries", [])


@pytest.mark.stack
@pytest.mark.slow
def test_the_corpus_on_flink_is_dead_lettered_exactly_without_a_restart(flink_stack, tmp_path: Path):
    """The real job (Java Kafka reader, Kafka sinks, Parquet) over the corpus: 0 restarts, exact dead letters,
    in = aggregated + dead-lettered + too late (~90 s: one job submission)."""
    from flink_support import LIQUIDITY_KEY, PipelineRun, read_topic, wait_until_consumed, wait_until_stable
    from flink_support import final_panes as final_pane_frame

    from darkpool.stack import flink

    run = PipelineRun(flink_stack, tmp_path, partitions=PARTITIONS)
    try:
        now = int(time.time() * 1000)  # the trades end 6 minutes ago: every window gets its on-time pane
        corpus = fuzz_corpus(20261202, n_good=500, n_bad=300, start_ms=now - 18 * 60_000, span_ms=12 * 60_000)
        assert_labels(corpus)
        labels = publish_corpus(flink_stack.bootstrap_servers, run.topics["trades"], corpus)
        job_id = run.submit()
        bootstrap = flink_stack.bootstrap_servers
        bad = sum(1 for r in corpus if r.reason is not None)
        wait_until_consumed(bootstrap, run.job_name, run.topics["trades"], timeout=300)
        wait_until_stable(bootstrap, [run.topics["liquidity"], run.topics["deadletter"]], quiet_seconds=15,
                          timeout=300, minimum={run.topics["deadletter"]: bad})
        restarts = job_restarts(flink_stack, job_id)
        exceptions = job_exceptions(flink_stack, job_id)
        state = flink.rest_get(flink_stack, f"/jobs/{job_id}")["state"]

        dead_rows = read_topic(bootstrap, run.topics["deadletter"])
        too_late = [d for d in dead_rows if d["reason"] == "too_late"]
        assert not too_late, "the corpus is in order per partition: nothing is too late"
        assert len(dead_rows) == bad, "no dead letter twice (no restart replayed any)"
        letters = [{k: v for k, v in row.items() if not k.startswith("_")} for row in dead_rows]  # no read_topic extras
        assert_dead_letters_exact(letters, labels, run.topics["trades"])
        for row in dead_rows:  # the dead letter's Kafka key: the source key's text, or base64:..., or the reason
            assert row["_key"] == (row["raw_key"] or row["reason"])
        good = len(corpus) - bad
        liquidity = final_pane_frame(read_topic(bootstrap, run.topics["liquidity"]), LIQUIDITY_KEY)
        assert int(liquidity["trade_count"].sum()) == 5 * good
        assert len(corpus) == good + bad + len(too_late)
        assert restarts == 0 and state == "RUNNING"
        assert not exceptions, [e.get("exceptionName") for e in exceptions]
        print("fuzz (Flink):", json.dumps({"in": len(corpus), "aggregated": good, "dead_lettered": bad,
                                           "too_late": len(too_late), "restarts": restarts,
                                           "reasons": Counter(d["reason"] for d in dead_rows)}))
    finally:
        run.cancel()
