package io.darkpool.beam;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.beam.sdk.coders.ByteArrayCoder;
import org.apache.beam.sdk.coders.KvCoder;
import org.apache.beam.sdk.coders.NullableCoder;
import org.apache.beam.sdk.coders.VarLongCoder;
import org.apache.beam.sdk.expansion.ExternalTransformRegistrar;
import org.apache.beam.sdk.io.kafka.KafkaIO;
import org.apache.beam.sdk.io.kafka.KafkaRecord;
import org.apache.beam.sdk.io.kafka.TimestampPolicyFactory;
import org.apache.beam.sdk.transforms.DoFn;
import org.apache.beam.sdk.transforms.ExternalTransformBuilder;
import org.apache.beam.sdk.transforms.PTransform;
import org.apache.beam.sdk.transforms.ParDo;
import org.apache.beam.sdk.transforms.windowing.BoundedWindow;
import org.apache.beam.sdk.values.KV;
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
 * An element is {@code KV(partition, batch)}: the records of one source partition in one bundle
 * (at most {@link #MAX_BATCH_RECORDS} records or about {@link #MAX_BATCH_BYTES} bytes), stamped
 * with the earliest timestamp it holds. Keyed by partition, Python can parse the batch in the
 * same keyed step that tracks the partition's watermark (one Python stage, no trade crossing a
 * shuffle). Python decodes it with {@code pipeline.codec.decode_record_batch}. Registered in the
 * expansion service under {@link #URN}.
 */
public final class ReadTradeRecords extends PTransform<PBegin, PCollection<KV<Long, byte[]>>> {

  public static final String URN = "darkpool:transform:read_trade_record_batches:v2";
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
  public PCollection<KV<Long, byte[]>> expand(PBegin input) {
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
        .setCoder(KvCoder.of(VarLongCoder.of(), ByteArrayCoder.of()));
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

  /** One partition's batch under construction. */
  private static final class PartitionBatch {
    final ByteArrayOutputStream bytes = new ByteArrayOutputStream(1 << 16);
    int records;
    Instant earliest;
  }

  /**
   * KafkaRecords -> (partition, batch) per source partition, at most {@link #MAX_BATCH_RECORDS}
   * records / about {@link #MAX_BATCH_BYTES} bytes, one batch at least per partition per bundle,
   * each stamped with the earliest timestamp it holds (never later than any record in it, so
   * nothing becomes late).
   */
  static final class BatchRecordsFn extends DoFn<KafkaRecord<byte[], byte[]>, KV<Long, byte[]>> {
    private transient Map<Integer, PartitionBatch> batches;
    private transient BoundedWindow window;

    @StartBundle
    public void startBundle() {
      batches = new HashMap<>();
      window = null;
    }

    @ProcessElement
    public void processElement(
        @Element KafkaRecord<byte[], byte[]> record,
        @Timestamp Instant timestamp,
        BoundedWindow elementWindow,
        OutputReceiver<KV<Long, byte[]>> out) {
      int partition = record.getPartition();
      PartitionBatch batch = batches.computeIfAbsent(partition, p -> new PartitionBatch());
      appendRecord(
          batch.bytes, partition, record.getOffset(), timestamp.getMillis(),
          record.getKV().getKey(), record.getKV().getValue());
      batch.records++;
      if (batch.earliest == null || timestamp.isBefore(batch.earliest)) {
        batch.earliest = timestamp;
      }
      window = elementWindow;
      if (batch.records >= MAX_BATCH_RECORDS || batch.bytes.size() >= MAX_BATCH_BYTES) {
        out.outputWithTimestamp(KV.of((long) partition, batch.bytes.toByteArray()), batch.earliest);
        batches.remove(partition);
      }
    }

    @FinishBundle
    public void finishBundle(FinishBundleContext context) {
      for (Map.Entry<Integer, PartitionBatch> entry : batches.entrySet()) {
        PartitionBatch batch = entry.getValue();
        context.output(KV.of((long) entry.getKey(), batch.bytes.toByteArray()), batch.earliest, window);
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
      implements ExternalTransformBuilder<Configuration, PBegin, PCollection<KV<Long, byte[]>>> {
    @Override
    public PTransform<PBegin, PCollection<KV<Long, byte[]>>> buildExternal(Configuration config) {
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
