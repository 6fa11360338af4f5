import CRdKafka

/// Topic configurations, read with the Admin API's DescribeConfigs (on any client handle).
extension KafkaClientHandle {
    /// Each topic's configuration entries (name → value; sensitive values are left out), or the error the cluster
    /// gave — e.g. not authorised, or an API it does not offer (librdkafka's mock cluster has no Admin API).
    func topicConfigs(_ topics: [String], timeoutMs: Int32) -> Result<[String: [String: String]], KafkaError> {
        // DescribeConfigs waits for the controller; a cluster whose controller is none of its brokers (librdkafka's mock
        // names broker 0 and has no Admin API) would only time out.
        let controller = rd_kafka_controllerid(pointer, 1_000)
        guard controller >= 0, brokerIds(timeoutMs: timeoutMs).contains(controller) else {
            return .failure(KafkaError(code: RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED.rawValue, message: "the cluster's controller (\(controller)) is none of its brokers"))
        }
        guard let queue = rd_kafka_queue_new(pointer) else { return .failure(KafkaError(code: RD_KAFKA_RESP_ERR__FAIL.rawValue, message: "no queue")) }
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(pointer, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorBuffer = [CChar](repeating: 0, count: 256)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errorBuffer, errorBuffer.count)
        var resources: [OpaquePointer?] = topics.map { rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, $0) }
        defer { for resource in resources { rd_kafka_ConfigResource_destroy(resource) } }
        resources.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_DescribeConfigs(pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 1_000) else {
            return .failure(KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "DescribeConfigs timed out"))
        }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let reason = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            return .failure(KafkaError(code: err.rawValue, message: "DescribeConfigs: \(reason)"))
        }
        guard let result = rd_kafka_event_DescribeConfigs_result(event) else {
            return .failure(KafkaError(code: RD_KAFKA_RESP_ERR__FAIL.rawValue, message: "DescribeConfigs: no result"))
        }
        var count = 0
        guard let described = rd_kafka_DescribeConfigs_result_resources(result, &count) else { return .success([:]) }
        var configs: [String: [String: String]] = [:]
        for i in 0..<count {
            guard let resource = described[i] else { continue }
            let name = String(cString: rd_kafka_ConfigResource_name(resource))
            let resourceError = rd_kafka_ConfigResource_error(resource)
            if resourceError != RD_KAFKA_RESP_ERR_NO_ERROR {
                let reason = rd_kafka_ConfigResource_error_string(resource).map { String(cString: $0) } ?? ""
                return .failure(KafkaError(code: resourceError.rawValue, message: "configuration of \(name): \(reason)"))
            }
            var entryCount = 0
            var entries: [String: String] = [:]
            if let list = rd_kafka_ConfigResource_configs(resource, &entryCount) {
                for j in 0..<entryCount {
                    guard let entry = list[j], let value = rd_kafka_ConfigEntry_value(entry) else { continue }
                    entries[String(cString: rd_kafka_ConfigEntry_name(entry))] = String(cString: value)
                }
            }
            configs[name] = entries
        }
        return .success(configs)
    }
}

extension KafkaClientHandle {
    /// The ids of the cluster's brokers, from its metadata.
    func brokerIds(timeoutMs: Int32) -> Set<Int32> {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        guard rd_kafka_metadata(pointer, 0, nil, &metadata, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return [] }
        defer { rd_kafka_metadata_destroy(metadata) }
        return Set((0..<Int(metadata.pointee.broker_cnt)).map { metadata.pointee.brokers[$0].id })
    }
}

extension KafkaPartitionReader {
    /// The configuration of each of `topics` (see `KafkaClientHandle.topicConfigs`).
    public func topicConfigs(_ topics: [String], timeoutMs: Int32 = 10_000) async -> Result<[String: [String: String]], KafkaError> {
        let client = self.clientHandle
        return await blocking { client.topicConfigs(topics, timeoutMs: timeoutMs) }
    }
}
