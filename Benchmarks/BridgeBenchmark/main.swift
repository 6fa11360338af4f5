// The bridge's benchmark harness (not a timed test): side by side in one run, on librdkafka's mock cluster in this
// process, it prints what the practical limit is and what the bridge does. See BENCHMARKS.md.
//
//   swift build -c release --product progress-bridge && swift build -c release --product bridge-benchmark
//   .build/release/bridge-benchmark [ingest] [stages] [ingest-stages] [latency] [fanout] [rawfanout] [restart] [--runs N] [--schemas DIR]
//       [--bridge PATH] [--subscribers N,N,…] [--latency-subscribers N] [--seconds S] [--engine sockets|nio] [--read-interval-ms MS]
//
// - ingest: the same topic (16 partitions) read by a raw librdkafka consumer loop (records fetched and freed) and by
//   the bridge's ingest path in this process (read, decode + validate, aggregate, with dead-letter and state
//   producers, a consumer group and checkpoints), for small jobs and for large jobs of the same total size, with the
//   CPU each takes per event (this whole process: consumer, mock cluster, and the bridge's ingest). The bridge's final
//   aggregates are checked, so a fast wrong answer cannot pass.
// - stages: ingest's two stages on one core each, without Kafka, and what job events and a job's subscribers cost
//   the applying stage; ingest-stages: only the first of those tables (for instruction counts of ingest's own work).
// - latency: 20 events/s of one job; Kafka's own produce → consume latency (a raw consumer) against produce →
//   WebSocket receive by 1,000 subscribers of the real binary (started as its own process).
// - fanout: N subscribers of one job of the real binary, 20,000 deliveries/s in all (20,000 / N events/s):
//   deliveries/s, latency, losses the contract forbids, the bridge's memory per connected subscriber, and CPU per
//   delivery while the updates are produced: the bridge's process, and this one's (load client, producer, mock Kafka).
// - rawfanout: the machine's floor for the latency and fan-out sections (their subscribers and rates): plain TCP on
//   loopback, one write per connection per event, read by another process (RawFanOut.swift); latency and CPU per delivery.
// - restart: start to ready of the real binary with 10,000 jobs in the state topic.
import Foundation
import Kafka
import SubscriberLoad

/// What to run, from the command line.
struct Options {
    var sections: [String] = []
    var runs = 3
    var schemas = "schemas"
    var bridgeBinary = ".build/release/progress-bridge"
    var fanOut = [1_000, 10_000]
    /// Subscribers in the latency section (the issue's target is for 1,000; fewer show the bridge's part without the fan-out burst).
    var latencySubscribers = 1_000
    var seconds = 20
    /// What carries the load client's connections in the latency and fan-out sections.
    var engine = LoadEngine.platformDefault
    /// The socket engine's read interval (`LoadConfiguration.readInterval`), and the raw fan-out's readers' too.
    var readInterval = LoadConfiguration(jobIds: ["-"]).readInterval

    /// The load client's settings from these options.
    var client: (engine: LoadEngine, readInterval: Duration) { (engine, readInterval) }

    /// The raw fan-out's readers' pace: the load client's (the NIO engine reads at once).
    var rawReadInterval: Duration { engine == .sockets ? readInterval : .zero }

    /// `interval` in milliseconds, for the section headings.
    static func milliseconds(_ interval: Duration) -> String { String(format: "%g", interval / .milliseconds(1)) }

    /// The load client's settings, as the section headings name them.
    var clientDescription: String {
        engine == .sockets ? "sockets engine, reading at most every \(Self.milliseconds(readInterval)) ms" : "\(engine.rawValue) engine"
    }

    static func parse() -> Options {
        var options = Options()
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--runs": options.runs = Int(arguments.popFirst() ?? "") ?? options.runs
            case "--schemas": options.schemas = arguments.popFirst() ?? options.schemas
            case "--bridge": options.bridgeBinary = arguments.popFirst() ?? options.bridgeBinary
            case "--subscribers": options.fanOut = (arguments.popFirst() ?? "").split(separator: ",").compactMap { Int($0) }
            case "--latency-subscribers": options.latencySubscribers = Int(arguments.popFirst() ?? "") ?? options.latencySubscribers
            case "--seconds": options.seconds = Int(arguments.popFirst() ?? "") ?? options.seconds
            case "--engine": options.engine = LoadEngine(rawValue: arguments.popFirst() ?? "") ?? options.engine
            case "--read-interval-ms":
                guard let milliseconds = Double(arguments.popFirst() ?? ""), (0...1000).contains(milliseconds) else {
                    FileHandle.standardError.write(Data("--read-interval-ms takes milliseconds from 0 to 1000\n".utf8))
                    exit(2)
                }
                options.readInterval = .microseconds(Int64(milliseconds * 1000))
            case "ingest", "stages", "ingest-stages", "latency", "fanout", "rawfanout", "restart": options.sections.append(argument)
            default:
                FileHandle.standardError.write(Data("unknown argument \(argument)\n".utf8))
                exit(2)
            }
        }
        if options.sections.isEmpty { options.sections = ["ingest", "stages", "latency", "fanout", "rawfanout", "restart"] }
        return options
    }
}

// The subscribers' process of the raw fan-out (see RawFanOut.swift), started by this harness.
if CommandLine.arguments.dropFirst().first == "rawfanout-subscribers" {
    let numbers = CommandLine.arguments.dropFirst(2).compactMap { Int($0) }
    guard numbers.count == 6 else { exit(2) }
    try rawFanOutSubscribers(
        port: numbers[0], connections: numbers[1], expected: numbers[2], messageBytes: numbers[3], timeoutSeconds: numbers[4],
        readIntervalMicroseconds: numbers[5])
    exit(0)
}
let options = Options.parse()
ChildProcesses.stopWithHarness()
let runs = options.runs
let seconds = options.seconds
let cluster = try KafkaMockCluster(brokers: 1, logger: logger)
let producer = try KafkaProducer(
    configuration: KafkaProducerConfiguration(bootstrapServers: cluster.bootstrapServers, properties: KafkaProperties(["linger.ms": "0"])), logger: logger)

/// The real binary on this cluster, reading `topic`, with limits raised for load from one address.
func startBridge(topic: String, label: String, options: Options, cluster: KafkaMockCluster) async throws -> BridgeProcess {
    let suffix = UUID().uuidString.prefix(8).lowercased()
    try cluster.createTopic("\(label).dlq.\(suffix)", partitions: 1)
    try cluster.createTopic("\(label).state.\(suffix)", partitions: 16)
    let bridge = try BridgeProcess(
        binary: options.bridgeBinary,
        arguments: [
            "--kafka-bootstrap", cluster.bootstrapServers, "--topic", topic, "--dlq-topic", "\(label).dlq.\(suffix)",
            "--state-topic", "\(label).state.\(suffix)", "--group-id", "\(label)-\(suffix)", "--insecure-no-auth", "--schemas", options.schemas,
            "--log-level", "warning", "--kafka-config", "fetch.wait.max.ms=10",
            "--max-connections", "20000", "--max-connections-per-ip", "20000", "--max-connections-per-subject", "20000",
            "--max-http-connections", "21000", "--max-http-connections-per-ip", "21000",
        ],
        label: label)
    _ = try await bridge.waitReady()
    return bridge
}

func ms(_ value: Double) -> String { value.isNaN ? "–" : String(format: "%.1f", value) }
func ms(_ value: Int64?) -> String { value.map(String.init) ?? "–" }

for section in options.sections {
    switch section {
    case "ingest":
        try await ingestSection(runs: runs, schemas: options.schemas, cluster: cluster, producer: producer)
    case "stages":
        try stagesSection(runs: runs, schemas: options.schemas)
    case "ingest-stages":
        try stagesSection(runs: runs, schemas: options.schemas, ingestOnly: true)
    case "latency":
        let topic = "latency.events"
        try cluster.createTopic(topic, partitions: 16)
        let bridge = try await startBridge(topic: topic, label: "latency", options: options, cluster: cluster)
        print("\nlatency: one job, 20 events/s for \(seconds) s, \(runs) runs (ms; p50 / p99 / max); load client: \(options.clientDescription)")
        print("| run | Kafka: produce → raw consumer | bridge: produce → WebSocket, \(options.latencySubscribers) subscribers | bridge adds at p50 / p99 | deliveries/s | lost |")
        print("| --- | --- | --- | --- | --- | --- |")
        for run in 1...runs {
            var rawJob = LiveJob(topic: topic, videos: 100, label: "raw")
            try await producer.sendAll(rawJob.opening())
            let raw = try await rawDeliveryLatency(
                bootstrap: cluster.bootstrapServers, job: &rawJob, partitions: 16, rate: 20, duration: .seconds(seconds), producer: producer)
            let result = try await bridgeDelivery(
                bridge: bridge, topic: topic, subscribers: options.latencySubscribers, rate: 20, duration: .seconds(seconds), producer: producer, label: "latency",
                client: options.client)
            let r = result.report
            let added = r.latency.map { "\(ms(Double($0.p50) - raw.p50)) / \(ms(Double($0.p99) - raw.p99))" } ?? "–"
            print(
                "| \(run) | \(ms(raw.p50)) / \(ms(raw.p99)) / \(ms(raw.max)) (\(raw.count) events) | \(ms(r.latency?.p50)) / \(ms(r.latency?.p99)) / \(ms(r.latency?.max)) (\(r.connectionsConnected) connected) | \(added) | \(String(format: "%.0f", r.deliveriesPerSecond)) | \(r.neverConflatedMissing + r.terminalMissing) |"
            )
        }
        bridge.stop()
    case "fanout":
        print("\nfan-out: one job, 20,000 deliveries/s in all, \(seconds) s (ms); load client: \(options.clientDescription)")
        print("| subscribers | events/s | connected | deliveries/s | p50 / p99 / max | lost | closed by the bridge | bridge memory per idle subscriber | CPU per delivery: bridge / harness (µs) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for subscribers in options.fanOut {
            let topic = "fanout.events.\(subscribers)"
            try cluster.createTopic(topic, partitions: 16)
            let bridge = try await startBridge(topic: topic, label: "fanout", options: options, cluster: cluster)
            let rate = 20_000 / Double(subscribers)
            let result = try await bridgeDelivery(
                bridge: bridge, topic: topic, subscribers: subscribers, rate: rate, duration: .seconds(seconds), producer: producer, label: "fanout",
                client: options.client)
            let r = result.report
            print(
                "| \(subscribers) | \(String(format: "%.1f", rate)) | \(r.connectionsConnected) | \(String(format: "%.0f", r.deliveriesPerSecond)) | \(ms(r.latency?.p50)) / \(ms(r.latency?.p99)) / \(ms(r.latency?.max)) | \(r.neverConflatedMissing + r.terminalMissing) | \(r.closesByCode.filter { $0.key != "1000" }.values.reduce(0, +)) | \(String(format: "%.1f KiB", result.perSubscriberKiB)) | \(String(format: "%.1f / %.1f", result.perDelivery(result.bridgeCPUSeconds), result.perDelivery(result.harnessCPUSeconds))) |"
            )
            bridge.stop()
        }
    case "rawfanout":
        print("\nraw fan-out, the practical limit here: plain TCP on loopback, one 320-byte write per connection per event, two sender and two reader threads (reading at most every \(Options.milliseconds(options.rawReadInterval)) ms, as the load client), nothing else; \(seconds) s")
        print("| subscribers | events/s | connected | deliveries/s | p50 / p99 / max (ms) | lost | CPU per delivery: send / receive (µs) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        let cases = [(options.latencySubscribers, 20.0)] + options.fanOut.map { ($0, 20_000 / Double($0)) }
        for (index, (subscribers, rate)) in cases.enumerated() where !cases[..<index].contains(where: { $0 == (subscribers, rate) }) {
            let r = try rawFanOut(subscribers: subscribers, rate: rate, duration: .seconds(seconds), readInterval: options.rawReadInterval)
            print(
                "| \(subscribers) | \(String(format: "%.1f", rate)) | \(r.connected) | \(String(format: "%.0f", r.deliveriesPerSecond)) | \(ms(r.latency.p50)) / \(ms(r.latency.p99)) / \(ms(r.latency.max)) | \(r.lost) | \(String(format: "%.1f / %.1f", r.sendMicroseconds, r.receiveMicroseconds)) |"
            )
        }
    case "restart":
        let jobs = 10_000
        let (ingested, restarts) = try await restartTimes(
            binary: options.bridgeBinary, schemas: options.schemas, bootstrap: cluster.bootstrapServers, cluster: cluster, producer: producer, jobs: jobs, runs: runs)
        let times = restarts.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
        print("\nrestart: \(jobs) jobs (\(jobs * 9) events) in the input, checkpointed to the state topic")
        print("| first start: read the input, ready | restart to ready (state restored), \(runs) runs | median |")
        print("| --- | --- | --- |")
        print("| \(ingested) | \(times.map { String(format: "%.2f s", $0) }.joined(separator: ", ")) | **\(String(format: "%.2f s", median(times)))** |")
    default:
        break
    }
}
