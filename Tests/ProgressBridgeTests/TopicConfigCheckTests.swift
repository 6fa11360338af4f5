import Testing

@testable import ProgressBridge

@Suite("Topic configuration check at start-up")
struct TopicConfigCheckTests {
    let check = TopicConfigCheck(stateTopic: "progress.state", deadLetterTopic: "progress.events.dlq", deadLetterMaxBytes: 900_000)

    @Test func aCompactedStateTopicAndALargeEnoughDeadLetterTopicPass() {
        let verdict = check.verdict([
            "progress.state": ["cleanup.policy": "compact"], "progress.events.dlq": ["cleanup.policy": "delete", "max.message.bytes": "1048588"],
        ])
        #expect(verdict == .init())
        #expect(check.verdict(["progress.state": ["cleanup.policy": "compact,delete"]]) == .init(), "compact with a retention is compacted too")
    }

    @Test func aStateTopicThatDeletesStopsTheBridgeSayingHowToFixIt() throws {
        let problem = try #require(check.verdict(["progress.state": ["cleanup.policy": "delete"]]).problem)
        #expect(problem.contains("progress.state") && problem.contains("cleanup.policy=delete") && problem.contains("--add-config cleanup.policy=compact"))
    }

    @Test func aDeadLetterTopicTakingSmallerRecordsIsAWarning() {
        let verdict = check.verdict(["progress.events.dlq": ["max.message.bytes": "500000"]])
        #expect(verdict.problem == nil)
        #expect(verdict.warnings.count == 1 && verdict.warnings[0].contains("500000") && verdict.warnings[0].contains("--dlq-max-bytes"))
    }

    @Test func unknownConfigurationsAreNotProblems() {
        #expect(check.verdict([:]) == .init())
        #expect(TopicConfigCheck(stateTopic: nil, deadLetterTopic: "d", deadLetterMaxBytes: 1).verdict(["d": ["max.message.bytes": "x"]]) == .init())
    }
}
