import ArgumentParser
import Foundation
import Kafka
import Logging
import ProgressBridge

@main
struct ProgressBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "progress-bridge",
        abstract: "Bridges video-generation progress events from Kafka to WebSocket subscribers, a REST API and Prometheus.",
        discussion: """
            With no --kafka-bootstrap (and no KAFKA_BOOTSTRAP_SERVERS) it starts an embedded Kafka mock
            cluster and a demo monitor, so live progress is visible at once.
            Every option has an environment-variable twin, named in its help; the flag wins.
            `progress-bridge validate --help` describes the schema validator.
            """,
        subcommands: [Validate.self, MockKafka.self]
    )

    @Option(name: .customLong("kafka-bootstrap"), help: "Kafka bootstrap servers, host:port[,…]. Env: KAFKA_BOOTSTRAP_SERVERS. Default: embedded mock cluster.")
    var kafkaBootstrap: String?

    @Option(name: .customLong("topic"), help: "Topic to consume; repeat for several. Env: KAFKA_TOPICS (comma-separated). Default: progress.events.")
    var topics: [String] = []

    @Option(name: .customLong("dlq-topic"), help: "Dead-letter topic. Env: KAFKA_DLQ_TOPIC. Default: progress.events.dlq.")
    var deadLetterTopic: String?

    @Option(name: .customLong("command-topic"), help: "Topic job commands (pause, resume, cancel, create) are published to for the monitor. Env: KAFKA_COMMAND_TOPIC. Default: progress.commands.")
    var commandTopic: String?

    @Option(name: .customLong("state-topic"), help: "Changelog topic of per-job state (create it compacted). Env: KAFKA_STATE_TOPIC. Default: progress.state.")
    var stateTopic: String?

    @Option(name: .customLong("group-id"), help: "Consumer group id. Env: KAFKA_GROUP_ID. Default: progress-bridge.")
    var groupId: String?

    @Option(name: .customLong("kafka-config"), help: "librdkafka property key=value (SASL/TLS too); repeatable. Env: KAFKA_CONFIG (entries separated by ';').")
    var kafkaConfig: [String] = []

    @Option(name: .customLong("host"), help: "Address to listen on. Env: BRIDGE_HOST. Default: 0.0.0.0.")
    var host: String?

    @Option(name: .customLong("port"), help: "WebSocket and REST port. Env: BRIDGE_PORT. Default: 8765.")
    var port: String?

    @Option(name: .customLong("admin-port"), help: "/metrics, /healthz, /readyz port. Env: BRIDGE_ADMIN_PORT. Default: 9464.")
    var adminPort: String?

    @Option(name: .customLong("schemas"), help: "Directory of the contract's JSON Schemas. Env: BRIDGE_SCHEMAS. Default: schemas.")
    var schemas: String?

    @Option(name: .customLong("web-root"), help: "Directory of the dashboard's files, served at / and /static/. Env: BRIDGE_WEB_ROOT. Default: web.")
    var webRoot: String?

    @Option(name: .customLong("api-docs"), help: "Directory of the API documents (openapi.json, asyncapi.json), served under /api/v1/. Env: BRIDGE_API_DOCS. Default: api.")
    var apiDocs: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical. Env: LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json. Env: LOG_FORMAT. Default: text.")
    var logFormat: String?

    @Flag(
        name: .customLong("demo-monitor"), inversion: .prefixedNo,
        help: "Publish demo jobs to the first topic (also against an external cluster). Env: BRIDGE_DEMO_MONITOR. Default: on only with the embedded cluster.")
    var demoMonitor: Bool?

    @Option(name: .customLong("send-queue"), help: "Messages queued per WebSocket subscriber before it is disconnected (close code 4001). Env: BRIDGE_SEND_QUEUE. Default: 1024.")
    var sendQueue: String?

    @Option(name: .customLong("history-per-job"), help: "Messages kept per job for resume. Env: BRIDGE_HISTORY_PER_JOB. Default: 1000.")
    var historyPerJob: String?

    @Option(name: .customLong("finished-job-retention"), help: "Seconds of its partition's stream time a finished job is kept (in memory and the state topic) after it finished. Env: BRIDGE_FINISHED_JOB_RETENTION. Default: 86400.")
    var finishedJobRetention: String?
    @Option(name: .customLong("idle-job-retention"), help: "Seconds of its partition's stream time a job that has not finished is kept after its last change. Env: BRIDGE_IDLE_JOB_RETENTION. Default: 604800.")
    var idleJobRetention: String?

    @Option(name: .customLong("max-connections"), help: "Most WebSocket connections in total (more: close 1013). Env: BRIDGE_MAX_CONNECTIONS. Default: 10000.")
    var maxConnections: String?

    @Option(name: .customLong("max-connections-per-ip"), help: "Most WebSocket connections per client address (more: close 1013). Env: BRIDGE_MAX_CONNECTIONS_PER_IP. Default: 100.")
    var maxConnectionsPerIP: String?

    @Option(name: .customLong("client-message-rate"), help: "Client frames (messages, fragments, pings, pongs) per second per connection, bursts of twice that (faster: close 1008). Env: BRIDGE_CLIENT_MESSAGE_RATE. Default: 20.")
    var clientMessageRate: String?

    @Option(name: .customLong("max-connections-per-subject"), help: "Most WebSocket connections per token subject (sub claim) (more: close 1013). Env: BRIDGE_MAX_CONNECTIONS_PER_SUBJECT. Default: 100.")
    var maxConnectionsPerSubject: String?

    @Option(name: .customLong("send-queue-bytes"), help: "Bytes queued per WebSocket subscriber before it is disconnected (close code 4001). Env: BRIDGE_SEND_QUEUE_BYTES. Default: 1048576.")
    var sendQueueBytes: String?

    @Option(name: .customLong("max-jobs"), help: "Most jobs held at once, shared out over the input partitions; events of more jobs are dead-lettered as limit_exceeded. Env: BRIDGE_MAX_JOBS. Default: 10000.")
    var maxJobs: String?

    @Option(name: .customLong("max-videos-per-job"), help: "Most videos per job; events about more are dead-lettered as limit_exceeded. Env: BRIDGE_MAX_VIDEOS_PER_JOB. Default: 200000.")
    var maxVideosPerJob: String?

    @Option(name: .customLong("max-event-ids-per-job"), help: "Event ids remembered per job (and kept in its state record) to recognise duplicates. Env: BRIDGE_MAX_EVENT_IDS_PER_JOB. Default: 2000.")
    var maxEventIdsPerJob: String?

    @Option(name: .customLong("max-clock-skew"), help: "Seconds occurred_at may be ahead of the Kafka record timestamp; more is dead-lettered as implausible_timestamp. Env: BRIDGE_MAX_CLOCK_SKEW. Default: 3600.")
    var maxClockSkew: String?

    @Option(name: .customLong("dlq-max-bytes"), help: "Largest dead-letter value in bytes; larger originals are written truncated (x-dlq-truncated). Env: KAFKA_DLQ_MAX_BYTES. Default: 900000.")
    var deadLetterMaxBytes: String?

    @Option(name: .customLong("trusted-proxy"), help: "Proxy address or CIDR whose X-Forwarded-For/Forwarded names the client; repeatable. Env: BRIDGE_TRUSTED_PROXIES (comma-separated). Default: none.")
    var trustedProxies: [String] = []

    @Option(name: .customLong("http-idle-timeout"), help: "Seconds without request activity before an HTTP connection is closed. Env: BRIDGE_HTTP_IDLE_TIMEOUT. Default: 60.")
    var httpIdleTimeout: String?

    @Option(name: .customLong("max-http-connections"), help: "Most HTTP connections open on the public port, WebSockets included. Env: BRIDGE_MAX_HTTP_CONNECTIONS. Default: 12000.")
    var maxHTTPConnections: String?

    @Option(name: .customLong("max-http-connections-per-ip"), help: "Most HTTP connections open from one peer address (IPv6: one /64; trusted proxies exempt). Env: BRIDGE_MAX_HTTP_CONNECTIONS_PER_IP. Default: 256.")
    var maxHTTPConnectionsPerIP: String?

    @Option(name: .customLong("jwt-leeway"), help: "Seconds of clock skew allowed on exp and nbf. Env: JWT_LEEWAY. Default: 30.")
    var jwtLeeway: String?

    @Option(name: .customLong("jwt-secret"), help: "HS256 secret for bearer tokens (≥ 32 bytes). Env: JWT_SECRET.")
    var jwtSecret: String?

    @Option(name: .customLong("jwt-public-key"), help: "PEM file: RSA (RS256) or EC P-256 (ES256) public key for bearer tokens. Env: JWT_PUBLIC_KEY_FILE.")
    var jwtPublicKey: String?

    @Option(name: .customLong("jwks"), help: "JWKS file with the public keys for bearer tokens (selected by kid). Env: JWT_JWKS_FILE.")
    var jwks: String?

    @Option(name: .customLong("jwt-issuer"), help: "Required iss claim. Env: JWT_ISSUER.")
    var jwtIssuer: String?

    @Option(name: .customLong("jwt-audience"), help: "Required aud claim member. Env: JWT_AUDIENCE.")
    var jwtAudience: String?

    @Flag(name: .customLong("insecure-no-auth"), help: "Accept requests without tokens (never in production). Env: BRIDGE_INSECURE_NO_AUTH. The embedded default turns it on by itself.")
    var insecureNoAuth = false

    @Option(name: .customLong("allowed-origin"), help: "Browser Origin allowed to open WebSockets; repeatable. Env: BRIDGE_ALLOWED_ORIGINS (comma-separated). Default: any.")
    var allowedOrigins: [String] = []

    func run() async throws {
        var flags = ConfigurationFlags()
        flags.finishedJobRetention = finishedJobRetention
        flags.idleJobRetention = idleJobRetention
        flags.maxConnections = maxConnections
        flags.maxConnectionsPerIP = maxConnectionsPerIP
        flags.clientMessageRate = clientMessageRate
        flags.maxConnectionsPerSubject = maxConnectionsPerSubject
        flags.sendQueueBytes = sendQueueBytes
        flags.maxJobs = maxJobs
        flags.maxVideosPerJob = maxVideosPerJob
        flags.maxEventIdsPerJob = maxEventIdsPerJob
        flags.maxClockSkew = maxClockSkew
        flags.deadLetterMaxBytes = deadLetterMaxBytes
        flags.trustedProxies = trustedProxies
        flags.httpIdleTimeout = httpIdleTimeout
        flags.maxHTTPConnections = maxHTTPConnections
        flags.maxHTTPConnectionsPerIP = maxHTTPConnectionsPerIP
        flags.jwtLeeway = jwtLeeway
        flags.jwtSecret = jwtSecret
        flags.jwtPublicKey = jwtPublicKey
        flags.jwks = jwks
        flags.jwtIssuer = jwtIssuer
        flags.jwtAudience = jwtAudience
        flags.insecureNoAuth = insecureNoAuth
        flags.allowedOrigins = allowedOrigins
        flags.kafkaBootstrap = kafkaBootstrap
        flags.topics = topics
        flags.deadLetterTopic = deadLetterTopic
        flags.commandTopic = commandTopic
        flags.stateTopic = stateTopic
        flags.groupId = groupId
        flags.kafkaConfig = kafkaConfig
        flags.host = host
        flags.port = port
        flags.adminPort = adminPort
        flags.schemas = schemas
        flags.webRoot = webRoot
        flags.apiDocs = apiDocs
        flags.logLevel = logLevel
        flags.logFormat = logFormat
        flags.demoMonitor = demoMonitor
        flags.sendQueue = sendQueue
        flags.historyPerJob = historyPerJob
        let configuration: BridgeConfiguration
        do {
            configuration = try BridgeConfiguration.resolve(flags, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.message)
        }
        let level = configuration.logLevel
        switch configuration.logFormat {
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: level) }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "progress-bridge")
        do {
            try await BridgeRuntime.run(configuration, logger: logger)
        } catch let error as StartupError {
            logger.critical("cannot start: \(error.message)")
            throw ExitCode(2)
        }
    }
}

/// `progress-bridge validate`: checks JSON documents against the contract's schemas (or another).
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate JSON documents against the event schemas (JSON Schema draft 2020-12).",
        discussion: """
            Prints one JSON result per document: {"source","valid","errors":[…]} with the spec's basic
            output units. Exit status: 0 when every document is valid, 1 when any is not, 2 on a usage
            or schema error. With no FILE, reads one document per line from standard input.
            """
    )

    @Option(name: .customLong("schemas"), help: "Directory of the contract's schemas (registered by $id). Default: schemas.")
    var schemas = "schemas"

    @Option(name: .customLong("schema"), help: "Validate against this schema file instead of the event envelope.")
    var schema: String?

    @Option(name: .customLong("map"), help: "URL_PREFIX=DIR: resolve references under URL_PREFIX from files in DIR; repeatable.")
    var maps: [String] = []

    @Flag(name: .customLong("format-assertion"), help: "Make \"format\" assert (date-time, email, uuid, …) instead of annotate.")
    var formatAssertion = false

    @Argument(help: "JSON files to validate (default: one document per line on standard input).")
    var files: [String] = []

    func run() throws {
        let validation: DocumentValidation
        do {
            validation = try DocumentValidation(schemasDirectory: schemas, schemaFile: schema, maps: maps, formatAssertion: formatAssertion)
        } catch {
            FileHandle.standardError.write(Data("progress-bridge validate: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        var allValid = true
        func emit(_ judged: (line: String, valid: Bool)) {
            print(judged.line)
            allValid = allValid && judged.valid
        }
        if files.isEmpty {
            var lineNumber = 0
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                if line.allSatisfy(\.isWhitespace) { continue }
                emit(validation.judge(Array(line.utf8), source: "stdin:\(lineNumber)"))
            }
        } else {
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else {
                    FileHandle.standardError.write(Data("progress-bridge validate: cannot read \(file)\n".utf8))
                    throw ExitCode(2)
                }
                emit(validation.judge(data, source: file))
            }
        }
        if !allValid { throw ExitCode(1) }
    }
}

/// `progress-bridge mock-kafka`: librdkafka's mock cluster as a standalone process, for tests and
/// local experiments. Prints `{"bootstrap_servers": …}` and takes fault-injection commands on stdin.
struct MockKafka: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-kafka",
        abstract: "Run librdkafka's mock Kafka cluster on loopback (for tests and experiments).",
        discussion: """
            Prints one JSON line {"bootstrap_servers": "127.0.0.1:PORT,…"} and then reads commands, one per line:
              down ID | up ID        take broker ID down / bring it back
              rtt ID MS              add round-trip time to broker ID
              leader TOPIC P ID      move the leadership of partition P
              topic-error TOPIC CODE make requests about TOPIC fail with Kafka error CODE (0 clears)
              request-errors API CODE N   fail the next N requests of Kafka API key API with CODE
              quit                   stop (so does end of input)
            The mock keeps about 5 MiB per partition and has no admin API: topics come from --topic.
            """
    )

    /// One line to standard output, unbuffered (a test reads it while we keep running).
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    @Option(name: .customLong("brokers"), help: "Number of brokers. Default: 1.")
    var brokers = 1

    @Option(name: .customLong("topic"), help: "NAME:PARTITIONS to create; repeatable. Default: progress.events:4, progress.events.dlq:1, progress.state:4.")
    var topics: [String] = []

    func run() throws {
        let cluster: KafkaMockCluster
        do {
            cluster = try KafkaMockCluster(brokers: brokers)
            for spec in topics.isEmpty ? ["progress.events:4", "progress.events.dlq:1", "progress.state:4"] : topics {
                let parts = spec.split(separator: ":")
                guard parts.count == 2, let partitions = Int(parts[1]), partitions > 0 else {
                    throw ValidationError("--topic expects NAME:PARTITIONS, got \(spec)")
                }
                try cluster.createTopic(String(parts[0]), partitions: partitions)
            }
        } catch let error as KafkaError {
            FileHandle.standardError.write(Data("mock-kafka: \(error)\n".utf8))
            throw ExitCode(2)
        }
        emit(#"{"bootstrap_servers":"\#(cluster.bootstrapServers)"}"#)
        while let line = readLine() {
            let words = line.split(separator: " ").map(String.init)
            switch (words.first, words.count) {
            case ("down", 2): cluster.setBrokerDown(Int32(words[1]) ?? 1)
            case ("up", 2): cluster.setBrokerUp(Int32(words[1]) ?? 1)
            case ("rtt", 3): cluster.setBrokerRTT(Int32(words[1]) ?? 1, ms: Int(words[2]) ?? 0)
            case ("request-errors", 4):
                cluster.pushRequestErrors(
                    apiKey: Int16(words[1]) ?? 0, errors: Array(repeating: Int32(words[2]) ?? 0, count: min(1000, Int(words[3]) ?? 0)))
            case ("topic-error", 3): cluster.setTopicError(words[1], code: Int32(words[2]) ?? 0)
            case ("leader", 4): cluster.setPartitionLeader(topic: words[1], partition: Int32(words[2]) ?? 0, brokerId: Int32(words[3]) ?? 1)
            case ("quit", _): return
            default:
                FileHandle.standardError.write(Data("mock-kafka: unknown command \(line)\n".utf8))
                continue
            }
            emit(#"{"ok":"\#(line)"}"#)
        }
    }
}
