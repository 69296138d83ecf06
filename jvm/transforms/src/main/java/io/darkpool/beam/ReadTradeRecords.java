package io.darkpool.beam;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.coders.ByteArrayCoder;
import org.apache.beam.sdk.coders.NullableCoder;
import org.apache.beam.sdk.expansion.ExternalTransformRegistrar;
import org.apache.beam.sdk.io.kafka.KafkaIO;
import org.apache.beam.sdk.io.kafka.KafkaRecord;
import org.apache.beam.sdk.io.kafka.TimestampPolicyFactory;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ExternalTransformBuilder;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.windowing.BoundedWindow;
import org.apache.beam.sdk.values.PBegin;
import org.apache.beam.sdk.values.PCollection;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.joda.time.Duration;
import org.joda.time.Instant;

/**
 * The trades topic, read with KafkaIO, as batches of compact records for Python.
 *
 * <p>Python's {@code ReadFromKafka(with_metadata=True)} hands every record across the Java/Python
 * boundary as its own schema Row (topic, partition, offset, timestamps, key, value, headers):
 * building, encoding and decoding a Row per trade, and running Beam's per-element machinery in
 * Python for each, cost more than the analytics. This transform reads exactly the same way
 * (KafkaIO with the legacy unbounded reader under {@code use_deprecated_read}, CreateTime
 * timestamp policy with no delay, so element timestamps and the watermark follow the records'
 * CreateTime; offsets committed only when Flink finalizes a checkpoint) and hands Python one
 * {@code byte[]} element per batch of records, each record being
 *
 * <pre>
 *   flags (1 byte) | partition (int32) | offset (int64) | timestamp ms (int64)
 *   | key length (int32) | value length (int32) | key bytes | value bytes     (big-endian)
 * </pre>
 *
 * <p>Flags: {@link #KEY_NULL} and {@link #VALUE_NULL} mark a null key or value (sent as no bytes).
 * A batch holds the records of one bundle (at most {@link #MAX_BATCH_RECORDS} records or about
 * {@link #MAX_BATCH_BYTES} bytes) and carries the earliest timestamp it holds. Python decodes it
 * in {@code pipeline.transforms.read}. Registered in the expansion service under {@link #URN}.
 */
public final class ReadTradeRecords extends PTransform<PBegin, PCollection<byte[]>> {

  public static final String URN = "darkpool:transform:read_trade_record_batches:v1";
  public static final int RECORD_HEADER_BYTES = 29;
  public static final int MAX_BATCH_RECORDS = 4096;
  public static final int MAX_BATCH_BYTES = 1 << 20;
  public static final byte KEY_NULL = 1;
  public static final byte VALUE_NULL = 2;
  private static final byte[] EMPTY = new byte[0];

  private final Map<String, Object> consumerConfig;
  private final List<String> topics;
  private final Long startReadTime;
  private final Long maxNumRecords;
  private final boolean commitOffsetInFinalize;

  ReadTradeRecords(Configuration config) {
    if (config.topics == null || config.topics.isEmpty()) {
      throw new IllegalArgumentException("read_trade_records: topics must name at least one topic");
    }
    if (config.consumerConfig == null || !config.consumerConfig.containsKey("bootstrap.servers")) {
      throw new IllegalArgumentException("read_trade_records: consumer_config must set bootstrap.servers");
    }
    this.consumerConfig = new HashMap<>(config.consumerConfig);
    this.topics = new ArrayList<>(config.topics);
    this.startReadTime = config.startReadTime;
    this.maxNumRecords = config.maxNumRecords;
    this.commitOffsetInFinalize = Boolean.TRUE.equals(config.commitOffsetInFinalize);
  }

  @Override
  public PCollection<byte[]> expand(PBegin input) {
    KafkaIO.Read<byte[], byte[]> read =
        KafkaIO.<byte[], byte[]>read()
            .withTopics(topics)
            .withKeyDeserializerAndCoder(
                ByteArrayDeserializer.class, NullableCoder.of(ByteArrayCoder.of()))
            .withValueDeserializerAndCoder(
                ByteArrayDeserializer.class, NullableCoder.of(ByteArrayCoder.of()))
            .withConsumerConfigUpdates(consumerConfig)
            .withTimestampPolicyFactory(TimestampPolicyFactory.withCreateTime(Duration.ZERO));
    if (commitOffsetInFinalize) {
      read = read.commitOffsetsInFinalize();
    }
    if (startReadTime != null) {
      read = read.withStartReadTime(Instant.ofEpochMilli(startReadTime));
    }
    if (maxNumRecords != null) {
      read = read.withMaxNumRecords(maxNumRecords);
    }
    return input
        .apply("ReadFromKafka", read)
        .apply("BatchRecords", ParDo.of(new BatchRecordsFn()))
        .setCoder(ByteArrayCoder.of());
  }

  /** Appends one record (header, key, value) to a batch; see the class comment for the layout. */
  static void appendRecord(
      ByteArrayOutputStream batch, int partition, long offset, long timestampMillis, byte[] key,
      byte[] value) {
    byte flags = 0;
    if (key == null) {
      flags |= KEY_NULL;
    }
    if (value == null) {
      flags |= VALUE_NULL;
    }
    byte[] keyBytes = key == null ? EMPTY : key;
    byte[] valueBytes = value == null ? EMPTY : value;
    ByteBuffer header = ByteBuffer.allocate(RECORD_HEADER_BYTES);
    header.put(flags).putInt(partition).putLong(offset).putLong(timestampMillis);
    header.putInt(keyBytes.length).putInt(valueBytes.length);
    batch.write(header.array(), 0, RECORD_HEADER_BYTES);
    batch.write(keyBytes, 0, keyBytes.length);
    batch.write(valueBytes, 0, valueBytes.length);
  }

  /**
   * KafkaRecords -> batches of at most {@link #MAX_BATCH_RECORDS} records / about {@link
   * #MAX_BATCH_BYTES} bytes, one batch at least per bundle, each stamped with the earliest
   * timestamp it holds (never later than any record in it, so nothing becomes late).
   */
  static final class BatchRecordsFn extends DoFn<KafkaRecord<byte[], byte[]>, byte[]> {
    private transient ByteArrayOutputStream batch;
    private transient int records;
    private transient Instant earliest;
    private transient BoundedWindow window;

    @StartBundle
    public void startBundle() {
      batch = new ByteArrayOutputStream(1 << 16);
      records = 0;
      earliest = null;
      window = null;
    }

    @ProcessElement
    public void processElement(
        @Element KafkaRecord<byte[], byte[]> record,
        @Timestamp Instant timestamp,
        BoundedWindow elementWindow,
        OutputReceiver<byte[]> out) {
      appendRecord(
          batch, record.getPartition(), record.getOffset(), timestamp.getMillis(),
          record.getKV().getKey(), record.getKV().getValue());
      records++;
      if (earliest == null || timestamp.isBefore(earliest)) {
        earliest = timestamp;
      }
      window = elementWindow;
      if (records >= MAX_BATCH_RECORDS || batch.size() >= MAX_BATCH_BYTES) {
        out.outputWithTimestamp(batch.toByteArray(), earliest);
        startBundle();
      }
    }

    @FinishBundle
    public void finishBundle(FinishBundleContext context) {
      if (records > 0) {
        context.output(batch.toByteArray(), earliest, window);
      }
      startBundle();
    }

    /** A full batch is stamped with its earliest record, which may precede the current one. */
    @Override
    @SuppressWarnings("deprecation")
    public Duration getAllowedTimestampSkew() {
      return Duration.standardDays(365L * 100);
    }
  }

  /**
   * The expansion payload: field names are the snake_case of the setters (consumer_config,
   * topics, start_read_time, max_num_records, commit_offset_in_finalize).
   */
  public static final class Configuration {
    private Map<String, String> consumerConfig;
    private List<String> topics;
    private Long startReadTime;
    private Long maxNumRecords;
    private Boolean commitOffsetInFinalize;

    public void setConsumerConfig(Map<String, String> consumerConfig) {
      this.consumerConfig = consumerConfig;
    }

    public void setTopics(List<String> topics) {
      this.topics = topics;
    }

    public void setStartReadTime(Long startReadTime) {
      this.startReadTime = startReadTime;
    }

    public void setMaxNumRecords(Long maxNumRecords) {
      this.maxNumRecords = maxNumRecords;
    }

    public void setCommitOffsetInFinalize(Boolean commitOffsetInFinalize) {
      this.commitOffsetInFinalize = commitOffsetInFinalize;
    }
  }

  /** Builds the transform from an expansion request's payload. */
  public static final class Builder
      implements ExternalTransformBuilder<Configuration, PBegin, PCollection<byte[]>> {
    @Override
    public PTransform<PBegin, PCollection<byte[]>> buildExternal(Configuration config) {
      return new ReadTradeRecords(config);
    }
  }

  /** Registers {@link #URN} with every expansion service that has this jar on its classpath. */
  public static final class Registrar implements ExternalTransformRegistrar {
    @Override
    public Map<String, ExternalTransformBuilder<?, ?, ?>> knownBuilderInstances() {
      return Map.of(URN, new Builder());
    }
  }
}
