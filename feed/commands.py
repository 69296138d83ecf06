"""``darkpool feed``: publish a synthetic (or replayed) trade tape to Kafka.

Examples::

    darkpool feed                                   # live tape, 1,000 trades/s, until Ctrl-C
    darkpool feed --mode replay --count 1000000     # a past session, as fast as possible
    darkpool feed --mode replay --shift-to-now      # a past session, re-timed to now, in real time
    darkpool feed --from-file trades.csv            # replay a file (CSV / JSONL / Parquet)
    darkpool feed --mode replay --count 100000 --malformed-rate 0.01 --late-rate 0.005 --tape-out tape.jsonl
    darkpool feed --scenario dark_share_surge:AAPL@+120s  # live, with a dark-share surge from 2 minutes in
    darkpool feed --random-scenarios 3 --seed 7     # three random scenarios, the same for the same seed

See docs/feed.md for every option and what the run prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

import orjson

from darkpool import tradefile
from darkpool.config import load_settings
from darkpool.contracts import TRADES_TOPIC, Calibration
from darkpool.errors import DarkpoolError
from feed.generator import (
    MALFORMED_KINDS,
    FaultConfig,
    FeedConfig,
    TapeGenerator,
    feed_random_scenarios,
    generate_batches,
    replay_span_seconds,
)
from feed.live import live_batches
from feed.parallel import BatchFactory, publish_parallel
from feed.producer import ProducerOptions, Progress
from feed.scenarios import DEFAULT_RANDOM_HORIZON_SECONDS, MAX_SCENARIOS, SCENARIO_KINDS, Scenario, scenario_argument
from feed.summary import FeedSummary
from feed.universe import DEFAULT_LIT_SHARE

log = logging.getLogger(__name__)


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where there is a default to show: not after options whose default
    is computed at run time (None; their help says what it is) nor after on/off flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``feed`` subcommand."""
    p = subparsers.add_parser(
        "feed", help="publish a realistic trade tape (synthetic or replayed) to Kafka",
        description="Publish trade prints to Kafka: a synthetic tape (live or a replayed session) or "
                    "trades from a file, with optional injected faults. Progress goes to stderr, the "
                    "summary to stdout.",
        formatter_class=_DefaultsHelpFormatter)
    where = p.add_argument_group("where to")
    where.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker, "
                                           "DARKPOOL_HOST:DARKPOOL_KAFKA_PORT)")
    where.add_argument("--topic", default=TRADES_TOPIC, help="topic to publish to")
    where.add_argument("--partitions", type=int, default=4, help="partitions if the topic must be created")
    where.add_argument("--no-create-topic", action="store_true", help="do not create the topic when missing")

    what = p.add_argument_group("what")
    what.add_argument("--mode", choices=("live", "replay"), default=None,
                      help="live: event time = now at --rate; replay: a past session (or --from-file) "
                           "as fast as possible [default: live, or replay with --from-file]")
    what.add_argument("--rate", type=float, default=1000.0, help="live mode: trades per second")
    what.add_argument("--history-minutes", type=float, default=0.0, metavar="N",
                      help="live mode: first send the N minutes before now (at --rate, as fast as possible), "
                           "then go live; scenario offsets (@+...) count from the history's first print")
    what.add_argument("--count", type=int, help="stop after this many records (faults included)")
    what.add_argument("--duration", type=float, help="stop after this many seconds (wall clock)")
    what.add_argument("--seed", type=int, default=None,
                      help="random seed; the same seed gives the same tape in replay mode [default: random, "
                           "printed in the summary]")
    what.add_argument("--session-date", help="replay: the session's date, YYYY-MM-DD [default: the last weekday]")
    what.add_argument("--session-trades", type=int, default=2_000_000,
                      help="replay: prints in the whole 09:30-16:00 session")
    what.add_argument("--shift-to-now", action="store_true",
                      help="replay: move event times so the first trade is now, keeping the gaps, and send each "
                           "trade at its (shifted) time — for replaying into the live pipeline")
    what.add_argument("--symbols", help="comma-separated subset of the universe (or of the calibration)")
    what.add_argument("--from-file", metavar="PATH", help="replay trades from a CSV, JSONL or Parquet file")
    what.add_argument("--format", choices=("auto", *tradefile.FORMATS), default="auto",
                      help="format of --from-file")
    what.add_argument("--skip-bad-rows", action="store_true",
                      help="--from-file: skip unreadable rows (counted) instead of failing")
    what.add_argument("--calibrate", metavar="FINRA_FILE",
                      help="follow a FINRA OTC transparency weekly file's venue shares and average trade sizes")
    what.add_argument("--lit-share", type=float, default=DEFAULT_LIT_SHARE,
                      help="with --calibrate: share of volume kept on lit exchanges")
    what.add_argument("--processes", type=int, default=1,
                      help="replay: send with this many producer processes (each sends a shard of the symbols; "
                           "together the same tape)")
    what.add_argument("--id-prefix", default=None,
                      help="trade-id prefix [default: T- in replay, T-<seed hex>- live, R- for files]")

    faults = p.add_argument_group("injected faults (rates are probabilities per trade)")
    faults.add_argument("--out-of-order-rate", type=float, default=0.0,
                        help="trades stamped up to --max-delay-seconds behind their symbol's latest time")
    faults.add_argument("--max-delay-seconds", type=float, default=30.0, help="bound of the out-of-order delay")
    faults.add_argument("--late-rate", type=float, default=0.0,
                        help="trades stamped beyond the pipeline's allowed lateness (allowed lateness + "
                             "window + margin behind their symbol's latest time)")
    faults.add_argument("--allowed-lateness-seconds", type=float, default=600.0,
                        help="the pipeline's allowed lateness")
    faults.add_argument("--window-seconds", type=float, default=300.0, help="the pipeline's window size")
    faults.add_argument("--late-margin-seconds", type=float, default=60.0, help="extra margin for late trades")
    faults.add_argument("--malformed-rate", type=float, default=0.0, help="malformed records")
    faults.add_argument("--malformed-kinds", default=",".join(MALFORMED_KINDS),
                        help="comma-separated kinds of malformed records, each named by the dead-letter reason "
                             "the pipeline gives it (default: all of %(default)s)")
    faults.add_argument("--duplicate-rate", type=float, default=0.0,
                        help="exact copies of valid records, sent right after the original")

    scen = p.add_argument_group(
        "injected scenarios of unusual dark activity (synthetic tape only; docs/feed.md, Scenarios)")
    scen.add_argument("--scenario", action="append", type=scenario_argument, default=None, metavar="SPEC",
                      help="KIND:SYMBOL[:VENUE][@WHEN][,for=DURATION][,share=X][,blocks=N][,block_shares=N]; "
                           f"KIND is {', '.join(SCENARIO_KINDS)}; WHEN is +<seconds>s after the first print "
                           "(default +120s) or an ISO-8601 event time; repeatable")
    scen.add_argument("--random-scenarios", type=int, default=0, metavar="N",
                      help="N scenarios of random kinds, symbols, venues and times within the run, drawn from "
                           "--seed (reproducible)")
    scen.add_argument("--scenario-horizon", type=float, default=None, metavar="SECONDS",
                      help="--random-scenarios start within this many seconds of the first print [default: the "
                           "run's span: --duration, --count / --rate, the replay session; else "
                           f"{DEFAULT_RANDOM_HORIZON_SECONDS:.0f}]")

    out = p.add_argument_group("output")
    out.add_argument("--tape-out", metavar="PATH", help="write every record sent as JSONL (key, timestamp_ms, "
                                                        "value, fault; scenario and scenario_index on the trades "
                                                        "a scenario made)")
    out.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("--progress-interval", type=float, default=1.0, help="seconds between progress lines")

    producer = p.add_argument_group("producer tuning")
    producer.add_argument("--linger-ms", type=float, default=ProducerOptions.linger_ms)
    producer.add_argument("--batch-bytes", type=int, default=ProducerOptions.batch_bytes)
    producer.add_argument("--compression", choices=("none", "lz4", "zstd", "snappy", "gzip"),
                          default=ProducerOptions.compression)
    producer.add_argument("--delivery-reports", choices=("all", "errors"), default=ProducerOptions.delivery_reports,
                          help="all: a delivery report per record; errors: failures only (faster)")
    producer.add_argument("--message-timeout-seconds", type=float,
                          default=ProducerOptions.message_timeout_ms / 1000.0,
                          help="how long a record may wait for the broker (an outage shorter than this loses "
                               "nothing: records stay queued and are retried; docs/reliability.md)")
    producer.add_argument("--queue-messages", type=int, default=ProducerOptions.queue_messages,
                          help="records the producer may hold while the broker is slow or unreachable "
                               "(the sender waits when it is full)")
    p.set_defaults(func=run)


def _csv_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    return items or None


def _session_date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise DarkpoolError(f"--session-date {text!r} is not a date (YYYY-MM-DD)") from exc


def load_calibration(path: str, symbols: tuple[str, ...] | None) -> Calibration:
    """Read a FINRA weekly file into the feed's calibration (for ``symbols`` only, if given).

    darkpool.finra_file is imported here, on the --calibrate path only: it loads DuckDB, which a plain
    feed run does not need.
    """
    from darkpool.finra_file import calibration_from_file

    calibration = calibration_from_file(path)
    if symbols:
        missing = [s for s in symbols if s not in calibration]
        if missing:
            raise DarkpoolError(f"symbol(s) {', '.join(missing)} are not in the calibration file {path}")
        calibration = {s: calibration[s] for s in symbols}
    return calibration


def fault_config(args: argparse.Namespace) -> FaultConfig:
    kinds = _csv_list(args.malformed_kinds) or ()
    faults = FaultConfig(
        out_of_order_rate=args.out_of_order_rate, max_delay_seconds=args.max_delay_seconds,
        late_rate=args.late_rate, allowed_lateness_seconds=args.allowed_lateness_seconds,
        window_seconds=args.window_seconds, late_margin_seconds=args.late_margin_seconds,
        malformed_rate=args.malformed_rate, malformed_kinds=kinds, duplicate_rate=args.duplicate_rate)
    faults.validate()
    return faults


def _check_options(args: argparse.Namespace, mode: str) -> None:
    if args.count is not None and args.count < 0:
        raise DarkpoolError(f"--count must be >= 0, got {args.count}")
    if args.duration is not None and args.duration <= 0:
        raise DarkpoolError(f"--duration must be > 0, got {args.duration}")
    if args.message_timeout_seconds <= 0 or args.queue_messages < 1:
        raise DarkpoolError("--message-timeout-seconds must be > 0 and --queue-messages >= 1")
    if mode == "live" and args.rate <= 0:
        raise DarkpoolError(f"--rate must be > 0, got {args.rate}")
    if args.partitions < 1:
        raise DarkpoolError(f"--partitions must be >= 1, got {args.partitions}")
    if args.progress_interval <= 0:
        raise DarkpoolError("--progress-interval must be > 0")
    if args.from_file and mode == "live":
        raise DarkpoolError("--from-file replays a file: use --mode replay (or leave --mode out)")
    if args.history_minutes < 0 or (args.history_minutes and mode != "live"):
        raise DarkpoolError(f"--history-minutes must be >= 0 and is for live mode (got {args.history_minutes:g} in "
                            f"{mode} mode)")
    if args.shift_to_now and mode == "live":
        raise DarkpoolError("--shift-to-now applies to replay mode (live mode is stamped now already)")
    if args.processes < 1 or (args.processes > 1 and mode == "live"):
        raise DarkpoolError(f"--processes must be >= 1, and 1 in live mode (got {args.processes} in {mode} mode)")
    if args.from_file and args.calibrate:
        raise DarkpoolError("--calibrate shapes the synthetic tape; it cannot be combined with --from-file")
    if args.from_file and (args.scenario or args.random_scenarios):
        raise DarkpoolError("--scenario and --random-scenarios shape the synthetic tape; they cannot be combined "
                            "with --from-file")
    given = len(args.scenario or ())
    if not 0 <= args.random_scenarios <= MAX_SCENARIOS or given + args.random_scenarios > MAX_SCENARIOS:
        raise DarkpoolError(f"--random-scenarios must be >= 0, and at most {MAX_SCENARIOS} scenarios in all "
                            f"(got {args.random_scenarios} random, {given} given)")
    if args.scenario_horizon is not None and not args.scenario_horizon > 0:
        raise DarkpoolError(f"--scenario-horizon must be > 0 seconds, got {args.scenario_horizon}")


def default_id_prefix(mode: str, seed: int) -> str:
    """``T-`` in replay (same seed, same ids); in live mode ``T-<seed in hex>-``, so that ids stay unique
    across restarts of a live feed (each run draws a new seed unless --seed is given)."""
    return "T-" if mode == "replay" else f"T-{seed:08x}-"


def build_source(args: argparse.Namespace, mode: str, seed: int) -> BatchFactory:
    """What to publish, from the command's options: a function shard -> batches.

    Files are read (and validated) once, here, before any producer process starts.
    """
    faults = fault_config(args)
    shift_to = int(time.time() * 1000) if args.shift_to_now else None
    if args.from_file:
        from feed.replay import file_batches, read_trades

        trades = read_trades(args.from_file, args.format, args.skip_bad_rows)
        prefix = args.id_prefix or "R-"
        return lambda shard: file_batches(trades, faults, seed=seed, count=args.count, shift_to_ms=shift_to,
                                          id_prefix=prefix, shard=shard)
    symbols = _csv_list(args.symbols)
    calibration = load_calibration(args.calibrate, symbols) if args.calibrate else None
    config = FeedConfig(seed=seed, mode=mode, session_date=_session_date(args.session_date),
                        session_trades=args.session_trades, count=args.count,
                        symbols=None if calibration else symbols, calibration=calibration,
                        lit_share=args.lit_share, faults=faults,
                        id_prefix=args.id_prefix or default_id_prefix(mode, seed))
    config = replace(config, scenarios=feed_scenarios(args, config))
    generator = TapeGenerator(config)  # validates the configuration (scenarios included) and builds the market now
    if mode == "live":
        return lambda shard: live_batches(generator, args.rate, args.count,
                                          history_seconds=args.history_minutes * 60)
    return lambda shard: generate_batches(config, shift_to_ms=shift_to, shard=shard)


def feed_scenarios(args: argparse.Namespace, config: FeedConfig) -> tuple[Scenario, ...]:
    """The run's scenarios: those of ``--scenario`` in their order, then ``--random-scenarios`` ones."""
    given = tuple(args.scenario or ())
    if not args.random_scenarios:
        return given
    return given + feed_random_scenarios(config, args.random_scenarios, scenario_horizon(args, config))


def scenario_horizon(args: argparse.Namespace, config: FeedConfig) -> float:
    """Seconds of event time after the first print that random scenarios fit in: ``--scenario-horizon``,
    else the run's span as far as the options say (live: --duration or --count / --rate; replay: the
    session's prints to send, no longer than --duration when sent in real time)."""
    if args.scenario_horizon is not None:
        return float(args.scenario_horizon)
    if config.mode == "live":
        if args.duration is not None:
            return float(args.duration)
        return args.count / args.rate if args.count is not None else DEFAULT_RANDOM_HORIZON_SECONDS
    span = replay_span_seconds(config)
    return min(span, args.duration) if args.duration is not None and args.shift_to_now else span


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Entry point of ``darkpool feed``."""
    mode = args.mode or ("replay" if args.from_file else "live")
    _check_options(args, mode)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    bootstrap = args.bootstrap or load_settings().bootstrap_servers
    options = ProducerOptions(linger_ms=args.linger_ms, batch_bytes=args.batch_bytes, compression=args.compression,
                              delivery_reports=args.delivery_reports, queue_messages=args.queue_messages,
                              message_timeout_ms=int(args.message_timeout_seconds * 1000))
    source = build_source(args, mode, seed)
    progress = Progress(enabled=not args.quiet, interval=args.progress_interval)
    log.info(f"feed: {mode} -> topic {args.topic} at {bootstrap} (seed {seed}"
             + (f", {args.processes} processes" if args.processes > 1 else "") + ")",
             extra={"mode": mode, "topic": args.topic, "bootstrap": bootstrap, "seed": seed})
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = publish_parallel(
            source, args.processes, bootstrap, args.topic, duration=args.duration, pace=args.shift_to_now,
            tape_out=args.tape_out, options=options, progress=progress, create_topic=not args.no_create_topic,
            partitions=args.partitions, mode=mode, seed=seed)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.format())
    if args.summary_json:
        Path(args.summary_json).write_bytes(orjson.dumps(summary.to_dict(), option=orjson.OPT_INDENT_2))
    return _exit_code(summary)


def _exit_code(summary: FeedSummary) -> int:
    """1 when records failed or stayed unconfirmed, else 0."""
    if summary.failed or summary.unconfirmed:
        print(f"feed: {summary.failed:,} record(s) failed and {summary.unconfirmed:,} stayed unconfirmed",
              file=sys.stderr)
        return 1
    return 0
