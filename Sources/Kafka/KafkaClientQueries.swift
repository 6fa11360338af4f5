import CRdKafka

/// Blocking metadata and offset queries every consumer-type client needs; call them through `blocking`.
extension KafkaClientHandle {
    /// The partitions of `topic`; empty when the topic does not exist.
    func partitions(of topic: String, timeoutMs: Int32) -> Result<[Int32], KafkaError> {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let handle = rd_kafka_topic_new(pointer, topic, nil)
        defer { if let handle { rd_kafka_topic_destroy(handle) } }
        let err = rd_kafka_metadata(pointer, 0, handle, &metadata, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return .failure(KafkaError(err, context: "metadata of \(topic)")) }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0 else { return .success([]) }
        let entry = metadata.pointee.topics[0]
        if entry.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART { return .success([]) }
        guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(KafkaError(entry.err, context: "metadata of \(topic)")) }
        return .success((0..<Int(entry.partition_cnt)).map { entry.partitions[$0].id }.sorted())
    }

    /// The low and high watermarks of a partition, asked of its leader.
    func watermarks(_ partition: TopicPartition, timeoutMs: Int32) -> Result<(low: Int64, high: Int64), KafkaError> {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(pointer, partition.topic, partition.partition, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .failure(KafkaError(err, context: "watermarks of \(partition.topic)/\(partition.partition)"))
        }
        return .success((low, high))
    }

    /// Takes up to `size` records from `queue`, waiting up to `timeoutMs` for the first. Consumer errors are
    /// reported to `status` and skipped (a partition's end is not an error).
    static func consumeBatch(_ queue: QueueHandle, timeoutMs: Int32, size: Int, status: KafkaClientStatus) -> [KafkaMessage] {
        var buffer = [UnsafeMutablePointer<rd_kafka_message_t>?](repeating: nil, count: max(1, size))
        // librdkafka's batch call waits the whole timeout unless the batch fills: at a few events per second every
        // record would wait out the timeout. So wait for the first record alone, then take what else is there.
        let first = rd_kafka_consume_batch_queue(queue.pointer, timeoutMs, &buffer, 1)
        guard first > 0 else { return [] }
        let rest = buffer.count > 1
            ? buffer.withUnsafeMutableBufferPointer { rd_kafka_consume_batch_queue(queue.pointer, 0, $0.baseAddress! + 1, $0.count - 1) }
            : 0
        let count = first + max(0, rest)
        var messages: [KafkaMessage] = []
        var topics = TopicNames()
        messages.reserveCapacity(count)
        for i in 0..<count {
            guard let raw = buffer[i] else { continue }
            defer { rd_kafka_message_destroy(raw) }
            let m = raw.pointee
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    status.recordError(code: m.err, reason: String(cString: rd_kafka_err2str(m.err)))
                }
                continue
            }
            messages.append(KafkaMessage(copying: raw, topics: &topics))
        }
        if !messages.isEmpty { status.markHealthy() }
        return messages
    }
}

/// Builds a librdkafka partition list; the caller destroys it.
func makePartitionList(_ entries: some Collection<TopicPartitionOffset>) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
    let list = rd_kafka_topic_partition_list_new(Int32(max(1, entries.count)))!
    for entry in entries {
        rd_kafka_topic_partition_list_add(list, entry.topic, entry.partition)!.pointee.offset = entry.offset
    }
    return list
}

/// The partitions of a librdkafka list.
func partitionSet(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> Set<TopicPartition> {
    var result = Set<TopicPartition>()
    for i in 0..<Int(list.pointee.cnt) {
        let entry = list.pointee.elems[i]
        result.insert(TopicPartition(topic: String(cString: entry.topic), partition: entry.partition))
    }
    return result
}
