import Foundation
import Kafka

/// `jobs` small jobs (created, running, two videos created and completed, completed): 9 events each, keyed by job.
func restartWorkload(jobs: Int, topic: String) -> [KafkaRecord] {
    var records: [KafkaRecord] = []
    records.reserveCapacity(jobs * 9)
    for j in 0..<jobs {
        let job = "job_restart_\(j)"
        var n = 0
        func event(_ type: String, _ data: String) {
            n += 1
            let value = #"{"schema_version":1,"event_id":"\#(job)-\#(n)","type":"\#(type)","job_id":"\#(job)","occurred_at":"2026-11-24T10:00:\#(10 + n).000Z","seq":\#(n),"data":\#(data)}"#
            records.append(KafkaRecord(topic: topic, key: Array(job.utf8), value: Array(value.utf8)))
        }
        event("job.state_changed", #"{"from":null,"to":"pending","job":{"title":"Restart job \#(j)","total_videos":2,"processing_deadline_ms":3600000,"priority":"normal"}}"#)
        event("job.state_changed", #"{"from":"pending","to":"running"}"#)
        for v in 0..<2 {
            event("video.created", #"{"video_id":"vid_\#(v)","row_index":\#(v + 2),"title":"Video \#(v)"}"#)
            event("video.completed", #"{"video_id":"vid_\#(v)","processing_ms":48210,"attempt":1,"output_url":"s3://content-outputs/\#(job)/vid_\#(v).mp4"}"#)
        }
        event("job.completed", "{}")
    }
    return records
}

/// Start to ready with `jobs` jobs in the state topic: a first bridge reads the input and checkpoints every job, and
/// stops (SIGTERM: last checkpoint, offsets committed); then a bridge of the same group is started `runs` times and
/// timed from the process's start until `/readyz` answers 200, and its job count is checked.
func restartTimes(binary: String, schemas: String, bootstrap: String, cluster: KafkaMockCluster, producer: KafkaProducer, jobs: Int, runs: Int) async throws
    -> (ingested: Duration, restarts: [Duration])
{
    let suffix = UUID().uuidString.prefix(8).lowercased()
    let topic = "restart.events.\(suffix)"
    let state = "restart.state.\(suffix)"
    try cluster.createTopic(topic, partitions: 16)
    try cluster.createTopic(state, partitions: 16)
    try cluster.createTopic("restart.dlq.\(suffix)", partitions: 1)
    try await producer.sendAll(restartWorkload(jobs: jobs, topic: topic))
    let arguments = [
        "--kafka-bootstrap", bootstrap, "--topic", topic, "--state-topic", state, "--dlq-topic", "restart.dlq.\(suffix)",
        "--group-id", "restart-\(suffix)", "--insecure-no-auth", "--schemas", schemas, "--log-level", "warning",
        "--max-jobs", String(jobs * 2), "--kafka-config", "fetch.wait.max.ms=10",
    ]
    let first = try BridgeProcess(binary: binary, arguments: arguments, label: "restart-first")
    let ingested = try await first.waitReady(timeout: .seconds(300))
    // Every job checkpointed: one header and two videos each, at least.
    while (first.metric("progress_bridge_state_records_written_total") ?? 0) < Double(jobs * 3) {
        try await Task.sleep(for: .milliseconds(100))
    }
    first.stop()
    var restarts: [Duration] = []
    for run in 0..<runs {
        let started = ContinuousClock.now
        let bridge = try BridgeProcess(binary: binary, arguments: arguments, label: "restart-\(run)")
        restarts.append(try await bridge.waitReady(since: started, timeout: .seconds(300)))
        let tracked = bridge.metric("progress_bridge_tracked_jobs") ?? -1
        guard tracked == Double(jobs) else { throw BenchmarkError("restored \(tracked) jobs, not \(jobs); see \(bridge.logPath)") }
        bridge.stop()
    }
    return (ingested, restarts)
}
