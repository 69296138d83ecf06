"""Every option of the pipeline, in one place.

:func:`build_parser` defines the pipeline's own flags; :func:`parse_pipeline_args`
turns argv into a validated, frozen :class:`PipelineConfig` plus the remaining
arguments, which go to Beam's ``PipelineOptions`` unchanged (runner, job
endpoint, environment, checkpointing, state backend, ...). Defaults for
addresses and paths come from :func:`darkpool.config.load_settings` (so the
``DARKPOOL_*`` environment variables apply); window defaults are docs/design.md's
(5-minute windows every minute, 10 minutes of allowed lateness).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from darkpool import contracts, storage, tradefile
from darkpool.alerts import DetectorSettings
from darkpool.config import VENUES_MODES, load_settings
from darkpool.errors import DarkpoolError
from darkpool.venues import Venue, registry_for, venue_types

SOURCES = ("kafka", "file", "kafka-range")
KAFKA_READERS = ("darkpool", "beam")
SHAPES = ("two-stage", "simple")
ACCUMULATION_MODES = ("accumulating", "discarding")

# Runner arguments the pipeline adds on Flink / the portable runner unless given
# (measured with bench/bench_pipeline.py; see docs/pipeline.md "Performance notes"):
# - bundles close after 200 ms (or 100,000 elements): every Python stage on a trade's
#   way holds its outputs until its bundle ends, so this bounds the latency each adds;
#   500 ms gave more throughput but a p99 over 5 s at 5,000 trades/s.
#   (Beam spells the Flink option maxBundleTimeMills: --max_bundle_time_mills)
# - two Python SDK worker processes per TaskManager: the stages share them, so the
#   burst of panes at each early firing no longer waits for the GIL behind parsing.
PORTABLE_DEFAULT_ARGS = {"--max_bundle_size": "100000", "--max_bundle_time_mills": "200",
                         "--sdk_worker_parallelism": "2"}
PORTABLE_RUNNERS = ("PortableRunner", "FlinkRunner")


@dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's settings in human units; ``*_ms`` properties convert once."""

    source: str = "kafka"
    bootstrap_servers: str = "127.0.0.1:9092"
    expansion_service: str = "127.0.0.1:8097"
    group_id: str = contracts.PIPELINE_GROUP_ID
    trades_topic: str = contracts.TRADES_TOPIC
    deadletter_topic: str = contracts.DEADLETTER_TOPIC
    liquidity_topic: str = contracts.LIQUIDITY_TOPIC
    market_topic: str = contracts.MARKET_TOPIC
    input_file: Path | None = None
    range_start: int | None = None  # epoch ms, kafka-range
    range_end: int | None = None  # epoch ms, kafka-range (parse_pipeline_args: default now)
    window_minutes: float = 5.0
    period_minutes: float = 1.0
    allowed_lateness_minutes: float = 10.0
    early_firing_seconds: int = 2
    accumulation: str = "accumulating"
    shape: str = "two-stage"
    max_event_skew_hours: float = 24.0
    output_path: Path | str | None = None  # Parquet dataset root (a folder or an s3:// URI); None = no Parquet
    parquet_flush_seconds: float = 10.0
    parquet_batch_rows: int = 50_000
    kafka_output: bool = True
    kafka_reader: str = "darkpool"  # darkpool: batched compact records (jvm/transforms); beam: ReadFromKafka rows
    deadletter_path: Path | str | None = None  # JSON-lines dead letters when not writing to Kafka
    parallelism: int | None = None
    detach: bool = False
    # live alerts (darkpool.alerts): on/off, their topic, and every detector threshold (--alert-* flags)
    alerts: bool = True  # the command line: on unless --accumulation discarding (alerts_enabled)
    alerts_topic: str = contracts.ALERTS_TOPIC
    detector_settings: DetectorSettings = field(default_factory=DetectorSettings)
    # the venue registry the job's steps use, read where the job is built (--venues / DARKPOOL_VENUES_FILE):
    # its venues travel inside the steps to the workers, which never read the file or the environment
    venues: tuple[Venue, ...] = field(default_factory=lambda: tuple(contracts.load_venues().values()))

    @property
    def venue_mpids(self) -> frozenset[str]:
        """The MPIDs of the job's registry: a trade at any other venue is dead-lettered as unknown_venue."""
        return frozenset(v.mpid for v in self.venues)

    @property
    def venue_types(self) -> dict[str, str]:
        """{MPID: venue_type} of the job's registry (liquidity records' venue_type, dark vs lit)."""
        return venue_types(self.venues)

    @property
    def reads_record_batches(self) -> bool:
        """Kafka read with the darkpool reader: the parse step gets ``bytes`` record batches."""
        return self.source != "file" and self.kafka_reader == "darkpool"

    @property
    def keep_before_ms(self) -> int | None:
        """kafka-range: records stamped at/after this are outside the range (skipped, counted)."""
        return self.range_end if self.source == "kafka-range" else None

    @property
    def bounded(self) -> bool:
        """A bounded (backfill) run: a file or a fixed range of the topic."""
        return self.source != "kafka"

    @property
    def window_ms(self) -> int:
        return int(round(self.window_minutes * 60_000))

    @property
    def period_ms(self) -> int:
        return int(round(self.period_minutes * 60_000))

    @property
    def allowed_lateness_ms(self) -> int:
        return int(round(self.allowed_lateness_minutes * 60_000))

    @property
    def early_firing_ms(self) -> int:
        return int(round(self.early_firing_seconds * 1000))

    @property
    def max_event_skew_ms(self) -> int:
        return int(round(self.max_event_skew_hours * 3_600_000))

    @property
    def accumulating(self) -> bool:
        """Accumulating panes (each pane = the window's full value so far)."""
        return self.accumulation == "accumulating"

    @property
    def too_late_filter(self) -> bool:
        """Too-late records are detected in streaming runs only (a bounded run has no late data)."""
        return not self.bounded


def _time_arg(text: str) -> int:
    """An ISO-8601 timestamp or epoch milliseconds -> epoch ms (for argparse)."""
    if text.isdigit():
        return int(text)
    try:
        return contracts.parse_event_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time or epoch ms: {text!r}") from exc


def _positive(kind):
    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    convert.__name__ = kind.__name__
    return convert


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _location_arg(text: str) -> Path | str:
    """A folder, or an s3://bucket/prefix URI (object storage at the endpoint of Settings), for argparse."""
    try:
        return storage.parse_location(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser(prog: str = "pipeline") -> argparse.ArgumentParser:
    """The pipeline's own flags. Anything else on the command line goes to Beam."""
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Dark pool liquidity pipeline: trades -> sliding-window analytics -> Kafka and Parquet. "
                    "Unrecognised arguments are Beam pipeline options (e.g. --runner, --job_endpoint).",
    )
    src = parser.add_argument_group("source")
    src.add_argument("--source", choices=SOURCES, default="kafka",
                     help="kafka: streaming from the trades topic; file: bounded backfill from --input; "
                          "kafka-range: bounded backfill of the topic between --range-start and --range-end")
    src.add_argument("--input", dest="input_file", type=Path,
                     help="trades file for --source file: .csv (contract or seed layout), .jsonl/.json, .parquet")
    src.add_argument("--range-start", type=_time_arg, help="kafka-range: first event time (ISO-8601 or epoch ms)")
    src.add_argument("--range-end", type=_time_arg, help="kafka-range: end event time, exclusive (default: now)")
    kafka = parser.add_argument_group("kafka")
    kafka.add_argument("--bootstrap-servers", default=settings.bootstrap_servers)
    kafka.add_argument("--expansion-service", default=settings.expansion_address,
                       help="address of the project's running Java expansion service (KafkaIO)")
    kafka.add_argument("--group-id", default=contracts.PIPELINE_GROUP_ID, help="Kafka consumer group of the reader")
    kafka.add_argument("--trades-topic", default=contracts.TRADES_TOPIC)
    kafka.add_argument("--deadletter-topic", default=contracts.DEADLETTER_TOPIC)
    kafka.add_argument("--liquidity-topic", default=contracts.LIQUIDITY_TOPIC)
    kafka.add_argument("--market-topic", default=contracts.MARKET_TOPIC)
    kafka.add_argument("--kafka-reader", choices=KAFKA_READERS, default="darkpool",
                       help="darkpool (default): KafkaIO through the project's ReadTradeRecords transform, records "
                            "handed to Python in compact batches; beam: Beam's ReadFromKafka with metadata, one "
                            "Row per record (same records and semantics, several times slower)")
    kafka.add_argument("--kafka-output", action=argparse.BooleanOptionalAction, default=None,
                       help="write liquidity/market/dead letters to Kafka (default: on for kafka sources, "
                            "off for --source file)")
    win = parser.add_argument_group("windows and triggers")
    win.add_argument("--window-minutes", type=_positive(float), default=5.0, help="sliding window size")
    win.add_argument("--period-minutes", type=_positive(float), default=1.0, help="sliding window period")
    win.add_argument("--allowed-lateness-minutes", type=_non_negative_float, default=10.0)
    win.add_argument("--early-firing-seconds", type=_positive(int), default=2,
                     help="processing-time delay of early panes (whole seconds: Beam's trigger proto keeps seconds)")
    win.add_argument("--accumulation", choices=ACCUMULATION_MODES, default="accumulating")
    win.add_argument("--shape", choices=SHAPES, default="two-stage",
                     help="two-stage: per-bundle pre-aggregation, delta panes, running totals in keyed state "
                          "(fast); simple: every trade into the sliding windows (reference)")
    win.add_argument("--max-event-skew-hours", type=_positive(float), default=24.0,
                     help="reject trades whose event_time is further than this from the record timestamp")
    out = parser.add_argument_group("output")
    out.add_argument("--output", dest="output_path", type=_location_arg, default=settings.dataset_location,
                     help="Parquet dataset root (<root>/{liquidity,market}/date=YYYY-MM-DD/*.parquet): a folder or "
                          "s3://bucket/prefix (endpoint and credentials from DARKPOOL_S3_*; default: "
                          "DARKPOOL_DATASET_URI, else <state>/parquet)")
    out.add_argument("--no-parquet", action="store_true", help="do not write the Parquet dataset")
    out.add_argument("--parquet-flush-seconds", type=_positive(float), default=10.0,
                     help="streaming: write a Parquet file at least this often per table and date")
    out.add_argument("--parquet-batch-rows", type=_positive(int), default=50_000,
                     help="rows per Parquet file at most")
    out.add_argument("--deadletter-path", type=_location_arg,
                     help="write dead letters as JSON lines under this folder or s3:// URI (default for --source file: "
                          "<output>/deadletter when Kafka output is off)")
    run = parser.add_argument_group("runner")
    run.add_argument("--parallelism", type=_positive(int), help="Flink parallelism (passed to the runner)")
    run.add_argument("--detach", action="store_true",
                     help="submit and return without waiting (streaming on Flink)")
    add_alert_flags(parser)
    reg = parser.add_argument_group("venue registry (docs/venues.md)")
    reg.add_argument("--venues", dest="venues_file", default=settings.venues_file, metavar="FILE",
                     help="a user venue registry CSV (the shipped registry's columns), read once when the job is "
                          "built (default: DARKPOOL_VENUES_FILE, else the shipped registry alone)")
    reg.add_argument("--venues-mode", choices=VENUES_MODES, default=settings.venues_mode.strip().lower(),
                     help="extend: add the file's venues to the shipped ones (a shipped MPID's row is replaced); "
                          "replace: the file is the whole registry (default: DARKPOOL_VENUES_MODE, else extend)")
    return parser


def add_alert_flags(parser: argparse.ArgumentParser) -> None:
    """--alerts, --alerts-topic and one --alert-<setting> flag per field of DetectorSettings (its default)."""
    group = parser.add_argument_group("live alerts (docs/alerts.md)")
    group.add_argument("--alerts", action=argparse.BooleanOptionalAction, default=None,
                       help="detect unusual dark activity (dark-share surges, block clusters, venue concentration) "
                            "and write alerts to --alerts-topic and the Parquet dataset's alerts table (default: on, "
                            "unless --accumulation discarding; --no-alerts turns them off)")
    group.add_argument("--alerts-topic", default=contracts.ALERTS_TOPIC)
    for item in fields(DetectorSettings):
        default = item.default
        flag = "--alert-" + item.name.replace("_", "-")
        if isinstance(default, tuple):
            group.add_argument(flag, dest=f"alert_{item.name}", type=float, nargs=len(default), default=default,
                               metavar=("LOW", "MEDIUM", "HIGH"), help=f"default: {' '.join(map(str, default))}")
        else:
            group.add_argument(flag, dest=f"alert_{item.name}", type=type(default), default=default,
                               help=f"default: {default}")


def alerts_enabled(flag: bool | None, accumulation: str) -> bool:
    """--alerts / --no-alerts as given, else on: the detectors need accumulating panes, so without either
    flag a job with ``--accumulation discarding`` runs without them (an explicit --alerts there is an error)."""
    return flag if flag is not None else accumulation == "accumulating"


def detector_settings_of(args: argparse.Namespace) -> DetectorSettings:
    """The DetectorSettings of parsed --alert-* flags (ValueError naming the setting when one is invalid)."""
    return DetectorSettings(**{item.name: getattr(args, f"alert_{item.name}") for item in fields(DetectorSettings)})


def registry_args(venues_file: str, venues_mode: str, argv: Sequence[str]) -> list[str]:
    """``--venues`` / ``--venues-mode`` for a configured user registry, unless ``argv`` has them.

    ``darkpool run`` adds them to a Flink job's recorded argv, so that `darkpool jobs resume`
    rebuilds the job with the registry it was submitted with (the file's absolute path).
    """
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    args: list[str] = []
    if venues_file and "--venues" not in given:
        args.append(f"--venues={Path(venues_file).resolve()}")
    if venues_file and "--venues-mode" not in given:
        args.append(f"--venues-mode={venues_mode}")
    return args


def parse_pipeline_args(
    argv: Sequence[str] | None, parser: argparse.ArgumentParser | None = None,
) -> tuple[PipelineConfig, list[str]]:
    """argv -> (validated config, arguments for Beam's PipelineOptions). Exits with usage on bad input."""
    parser = parser or build_parser()
    args, beam_args = parser.parse_known_args(argv)
    kafka_output = args.kafka_output if args.kafka_output is not None else args.source != "file"
    output_path = None if args.no_parquet else args.output_path
    range_end = args.range_end
    if args.source == "kafka-range" and range_end is None:
        range_end = int(time.time() * 1000)  # the end of a range is "now" when the job is built
    try:
        registry = registry_for(str(Path(args.venues_file).resolve()) if args.venues_file else "", args.venues_mode)
    except DarkpoolError as exc:
        parser.error(str(exc))
    try:
        detector_settings = detector_settings_of(args)
    except ValueError as exc:
        parser.error(f"--alert-*: {exc}")
    deadletter_path = args.deadletter_path
    if deadletter_path is None and not kafka_output and output_path is not None:
        deadletter_path = storage.join(output_path, "deadletter")
    config = PipelineConfig(
        source=args.source, bootstrap_servers=args.bootstrap_servers, expansion_service=args.expansion_service,
        group_id=args.group_id, trades_topic=args.trades_topic, deadletter_topic=args.deadletter_topic,
        liquidity_topic=args.liquidity_topic, market_topic=args.market_topic, input_file=args.input_file,
        range_start=args.range_start, range_end=range_end,
        window_minutes=args.window_minutes, period_minutes=args.period_minutes,
        allowed_lateness_minutes=args.allowed_lateness_minutes, early_firing_seconds=args.early_firing_seconds,
        accumulation=args.accumulation,
        shape=args.shape, max_event_skew_hours=args.max_event_skew_hours, output_path=output_path,
        parquet_flush_seconds=args.parquet_flush_seconds, parquet_batch_rows=args.parquet_batch_rows,
        kafka_output=kafka_output, kafka_reader=args.kafka_reader,
        deadletter_path=deadletter_path, parallelism=args.parallelism,
        detach=args.detach, venues=tuple(registry.values()),
        alerts=alerts_enabled(args.alerts, args.accumulation), alerts_topic=args.alerts_topic,
        detector_settings=detector_settings,
    )
    problem = validate(config)
    if problem:
        parser.error(problem)
    return config, list(beam_args)


def validate(config: PipelineConfig) -> str | None:
    """The first inconsistency in a config, or None when it is usable."""
    if config.period_ms <= 0 or config.window_ms <= 0:
        return "window and period must be at least one millisecond"
    if config.window_ms % config.period_ms:
        return (f"--window-minutes ({config.window_minutes}) must be a multiple of --period-minutes "
                f"({config.period_minutes})")
    if config.source == "file":
        if config.input_file is None:
            return "--source file needs --input FILE"
        if not config.input_file.is_file():
            return f"--input {config.input_file}: no such file"
        try:
            tradefile.detect_format(config.input_file)
        except DarkpoolError:
            return f"--input {config.input_file}: not a trades file (use {', '.join(tradefile.EXTENSIONS)}; .gz too)"
    elif config.input_file is not None:
        return "--input is only for --source file"
    if config.source == "kafka-range" and config.range_start is None:
        return "--source kafka-range needs --range-start"
    if config.range_end is not None and config.range_start is not None and config.range_end <= config.range_start:
        return "--range-end must be after --range-start"
    if config.alerts and not config.accumulating:
        return "--alerts needs accumulating panes (the detectors score each window's value so far)"
    if config.output_path is None and not config.kafka_output:
        return "nothing to write: enable Kafka output (--kafka-output) or Parquet (drop --no-parquet)"
    return None


def runner_args(config: PipelineConfig, beam_args: Sequence[str]) -> list[str]:
    """Beam arguments for this config: streaming for Kafka, parallelism, bundle defaults on Flink."""
    args = list(beam_args)
    given = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    if not config.bounded and "--streaming" not in given:
        args.append("--streaming")
    if config.parallelism is not None and "--parallelism" not in given:
        args.append(f"--parallelism={config.parallelism}")
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in args:
        position = args.index("--runner")
        runner = args[position + 1] if position + 1 < len(args) else None
    if runner in PORTABLE_RUNNERS:
        args.extend(f"{flag}={value}" for flag, value in PORTABLE_DEFAULT_ARGS.items() if flag not in given)
    return args
