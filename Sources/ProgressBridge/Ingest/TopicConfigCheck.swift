/// What the bridge requires of its topics' configurations, judged from what DescribeConfigs returned.
struct TopicConfigCheck {
    let stateTopic: String?
    let deadLetterTopic: String
    let deadLetterMaxBytes: Int

    /// A problem that must stop the bridge, and warnings.
    struct Verdict: Equatable {
        var problem: String?
        var warnings: [String] = []
    }

    func verdict(_ configs: [String: [String: String]]) -> Verdict {
        var verdict = Verdict()
        if let stateTopic, let policy = configs[stateTopic]?["cleanup.policy"], !policy.split(separator: ",").contains("compact") {
            verdict.problem =
                "the state topic \(stateTopic) has cleanup.policy=\(policy): job state would be deleted with old segments and lost at the next "
                + "restart; make it compacted (kafka-configs.sh --alter --entity-type topics --entity-name \(stateTopic) --add-config cleanup.policy=compact)"
        }
        if let limit = configs[deadLetterTopic]?["max.message.bytes"].flatMap(Int.init), limit < deadLetterMaxBytes {
            verdict.warnings.append(
                "the dead-letter topic \(deadLetterTopic) takes records of at most \(limit) bytes (max.message.bytes), less than --dlq-max-bytes "
                    + "\(deadLetterMaxBytes): larger dead letters would be refused; raise the topic's limit or lower --dlq-max-bytes")
        }
        return verdict
    }
}
