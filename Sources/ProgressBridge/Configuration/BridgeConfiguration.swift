import Logging
import ProgressAggregation

/// Everything the bridge needs to run, resolved from flags and their environment twins.
public struct BridgeConfiguration: Sendable, Equatable {
    /// How log lines are written.
    public enum LogFormat: String, Sendable, CaseIterable {
        case text, json
    }

    /// `bootstrap.servers`; `nil` starts the embedded mock cluster.
    public var kafkaBootstrap: String?
    public var topics = ["progress.events"]
    public var deadLetterTopic = "progress.events.dlq"
    /// Where job commands (pause, resume, cancel, create) go for the monitor (key = job id).
    public var commandTopic = "progress.commands"
    /// Changelog of per-job state (compacted in production).
    public var stateTopic = "progress.state"
    public var groupId = "progress-bridge"
    /// librdkafka passthrough (`--kafka-config key=value`), for consumer and producer alike.
    public var kafkaProperties: [String: String] = [:]
    public var host = "0.0.0.0"
    public var port = 8765
    public var adminPort = 9464
    public var schemasPath = "schemas"
    /// Directory of the dashboard's static files (served at `/` and `/static/`).
    public var webRoot = "web"
    /// Directory of the API documents (OpenAPI, AsyncAPI), served at `/api/v1/openapi.json` and `/api/v1/asyncapi.json`.
    public var apiDocs = "api"
    public var logLevel: Logger.Level = .info
    public var logFormat: LogFormat = .text
    /// Run the demo monitor (default: on with the embedded cluster, off otherwise).
    public var demoMonitor = true
    public var sendQueueCapacity = 1024
    public var historyPerJob = 1000
    /// Seconds a finished job stays in memory and in the state topic after it finished.
    public var finishedJobRetention = 86_400
    /// Seconds a job that has not finished stays after its last change (a monitor that died mid-job).
    public var idleJobRetention = 604_800
    public var maxConnections = 10_000
    public var maxConnectionsPerIP = 100
    public var maxConnectionsPerSubject = 100
    public var clientMessageRate = 20
    /// Bytes queued per subscriber before it is cut off (4001).
    public var sendQueueBytes = 1 << 20
    /// Jobs held at once; events of more jobs are dead-lettered (`limit_exceeded`).
    public var maxJobs = 10_000
    /// Videos per job; events about more are dead-lettered (`limit_exceeded`).
    public var maxVideosPerJob = 200_000
    /// Event ids remembered per job for recognising duplicates.
    public var maxEventIdsPerJob = AggregateLimits().maxEventIds
    /// Seconds `occurred_at` may be ahead of the Kafka record's timestamp (more: `implausible_timestamp`).
    public var maxClockSkew = 3600
    /// Largest dead-letter record value in bytes; larger originals are truncated (and marked so).
    public var deadLetterMaxBytes = 900_000
    /// Peers trusted to name the client's address in X-Forwarded-For / Forwarded.
    public var trustedProxies: [String] = []
    /// Seconds without request activity before an HTTP connection is closed.
    public var httpIdleTimeout = 60
    /// HTTP connections open at once on the public port (WebSockets included).
    public var maxHTTPConnections = 12_000
    /// HTTP connections open at once from one peer address (IPv6: one /64).
    public var maxHTTPConnectionsPerIP = 256
    /// Token verification; see `AuthSettings`.
    public var auth = AuthSettings()
    /// Authentication was switched off because the embedded default runs without keys.
    public var authDisabledForEmbeddedDefault = false

    public init() {}

    /// Whether the bridge runs on its embedded mock Kafka cluster.
    public var isEmbedded: Bool { kafkaBootstrap == nil }
}

/// A configuration value that cannot be used; the message names the flag and its variable.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Flag values as given on the command line (`nil` / empty when not given).
public struct ConfigurationFlags: Sendable {
    public var kafkaBootstrap: String?
    public var topics: [String] = []
    public var deadLetterTopic: String?
    public var commandTopic: String?
    public var stateTopic: String?
    public var groupId: String?
    public var kafkaConfig: [String] = []
    public var host: String?
    public var port: String?
    public var adminPort: String?
    public var schemas: String?
    public var webRoot: String?
    public var apiDocs: String?
    public var logLevel: String?
    public var logFormat: String?
    public var demoMonitor: Bool?
    public var sendQueue: String?
    public var historyPerJob: String?
    public var finishedJobRetention: String?
    public var idleJobRetention: String?
    public var maxConnections: String?
    public var maxConnectionsPerIP: String?
    public var maxConnectionsPerSubject: String?
    public var clientMessageRate: String?
    public var sendQueueBytes: String?
    public var maxJobs: String?
    public var maxVideosPerJob: String?
    public var maxEventIdsPerJob: String?
    public var maxClockSkew: String?
    public var deadLetterMaxBytes: String?
    public var trustedProxies: [String] = []
    public var httpIdleTimeout: String?
    public var maxHTTPConnections: String?
    public var maxHTTPConnectionsPerIP: String?
    public var jwtLeeway: String?
    public var jwtSecret: String?
    public var jwtPublicKey: String?
    public var jwks: String?
    public var jwtIssuer: String?
    public var jwtAudience: String?
    public var insecureNoAuth = false
    public var allowedOrigins: [String] = []

    public init() {}
}

/// The environment variable twin of each flag.
public enum ConfigurationEnvironment {
    public static let kafkaBootstrap = "KAFKA_BOOTSTRAP_SERVERS"
    public static let topics = "KAFKA_TOPICS"
    public static let deadLetterTopic = "KAFKA_DLQ_TOPIC"
    public static let commandTopic = "KAFKA_COMMAND_TOPIC"
    public static let stateTopic = "KAFKA_STATE_TOPIC"
    public static let groupId = "KAFKA_GROUP_ID"
    public static let kafkaConfig = "KAFKA_CONFIG"
    public static let host = "BRIDGE_HOST"
    public static let port = "BRIDGE_PORT"
    public static let adminPort = "BRIDGE_ADMIN_PORT"
    public static let schemas = "BRIDGE_SCHEMAS"
    public static let webRoot = "BRIDGE_WEB_ROOT"
    public static let apiDocs = "BRIDGE_API_DOCS"
    public static let logLevel = "LOG_LEVEL"
    public static let logFormat = "LOG_FORMAT"
    public static let demoMonitor = "BRIDGE_DEMO_MONITOR"
    public static let sendQueue = "BRIDGE_SEND_QUEUE"
    public static let historyPerJob = "BRIDGE_HISTORY_PER_JOB"
    public static let finishedJobRetention = "BRIDGE_FINISHED_JOB_RETENTION"
    public static let idleJobRetention = "BRIDGE_IDLE_JOB_RETENTION"
    public static let maxConnections = "BRIDGE_MAX_CONNECTIONS"
    public static let maxConnectionsPerIP = "BRIDGE_MAX_CONNECTIONS_PER_IP"
    public static let clientMessageRate = "BRIDGE_CLIENT_MESSAGE_RATE"
    public static let maxConnectionsPerSubject = "BRIDGE_MAX_CONNECTIONS_PER_SUBJECT"
    public static let sendQueueBytes = "BRIDGE_SEND_QUEUE_BYTES"
    public static let maxJobs = "BRIDGE_MAX_JOBS"
    public static let maxVideosPerJob = "BRIDGE_MAX_VIDEOS_PER_JOB"
    public static let maxEventIdsPerJob = "BRIDGE_MAX_EVENT_IDS_PER_JOB"
    public static let maxClockSkew = "BRIDGE_MAX_CLOCK_SKEW"
    public static let deadLetterMaxBytes = "KAFKA_DLQ_MAX_BYTES"
    public static let trustedProxies = "BRIDGE_TRUSTED_PROXIES"
    public static let httpIdleTimeout = "BRIDGE_HTTP_IDLE_TIMEOUT"
    public static let maxHTTPConnections = "BRIDGE_MAX_HTTP_CONNECTIONS"
    public static let maxHTTPConnectionsPerIP = "BRIDGE_MAX_HTTP_CONNECTIONS_PER_IP"
    public static let jwtLeeway = "JWT_LEEWAY"
    public static let jwtSecret = "JWT_SECRET"
    public static let jwtPublicKey = "JWT_PUBLIC_KEY_FILE"
    public static let jwks = "JWT_JWKS_FILE"
    public static let jwtIssuer = "JWT_ISSUER"
    public static let jwtAudience = "JWT_AUDIENCE"
    public static let insecureNoAuth = "BRIDGE_INSECURE_NO_AUTH"
    public static let allowedOrigins = "BRIDGE_ALLOWED_ORIGINS"
}

extension BridgeConfiguration {
    /// Resolves flags over environment variables over defaults. A flag wins over its variable.
    public static func resolve(_ flags: ConfigurationFlags, environment: [String: String]) throws(ConfigurationError) -> BridgeConfiguration {
        typealias Env = ConfigurationEnvironment
        var c = BridgeConfiguration()
        func value(_ flag: String?, _ variable: String) -> (String, String)? {
            if let flag { return (flag, "") }
            if let env = environment[variable], !env.isEmpty { return (env, variable) }
            return nil
        }
        func describe(_ flag: String, _ variable: String, _ source: String) -> String {
            source.isEmpty ? flag : "\(variable) (twin of \(flag))"
        }
        func nonEmpty(_ text: String, _ flag: String, _ variable: String, _ source: String) throws(ConfigurationError) -> String {
            let trimmed = text.trimmingWhitespace()
            if trimmed.isEmpty { throw ConfigurationError("\(describe(flag, variable, source)) must not be empty") }
            return trimmed
        }
        func port(_ text: String, _ flag: String, _ variable: String, _ source: String) throws(ConfigurationError) -> Int {
            guard let p = Int(text.trimmingWhitespace()), (0...65535).contains(p) else {
                throw ConfigurationError("\(describe(flag, variable, source)) must be a port number from 0 to 65535, got \"\(text)\"")
            }
            return p
        }
        // Every number has an upper bound too, so nothing derived from it (milliseconds, sums) can overflow.
        func positive(_ text: String, _ flag: String, _ variable: String, _ source: String, max: Int = 1_000_000_000) throws(ConfigurationError) -> Int {
            guard let n = Int(text.trimmingWhitespace()), n > 0, n <= max else {
                throw ConfigurationError("\(describe(flag, variable, source)) must be an integer from 1 to \(max), got \"\(text.prefix(40))\"")
            }
            return n
        }
        func integer(_ flag: String, _ variable: String, _ text: String?, max: Int = 1_000_000_000) throws(ConfigurationError) -> Int? {
            guard let (v, src) = value(text, variable) else { return nil }
            return try positive(v, flag, variable, src, max: max)
        }

        if let (v, src) = value(flags.kafkaBootstrap, Env.kafkaBootstrap) {
            c.kafkaBootstrap = try nonEmpty(v, "--kafka-bootstrap", Env.kafkaBootstrap, src)
        }
        let topicList = flags.topics.isEmpty ? (environment[Env.topics].map { $0.split(separator: ",").map(String.init) } ?? []) : flags.topics
        if !topicList.isEmpty {
            let source = flags.topics.isEmpty ? Env.topics : ""
            c.topics = []
            for t in topicList { c.topics.append(try nonEmpty(t, "--topic", Env.topics, source)) }
        }
        if let (v, src) = value(flags.deadLetterTopic, Env.deadLetterTopic) {
            c.deadLetterTopic = try nonEmpty(v, "--dlq-topic", Env.deadLetterTopic, src)
        }
        if let (v, src) = value(flags.stateTopic, Env.stateTopic) {
            c.stateTopic = try nonEmpty(v, "--state-topic", Env.stateTopic, src)
        }
        if let (v, src) = value(flags.commandTopic, Env.commandTopic) {
            c.commandTopic = try nonEmpty(v, "--command-topic", Env.commandTopic, src)
        }
        if c.topics.contains(c.commandTopic) || [c.deadLetterTopic, c.stateTopic].contains(c.commandTopic) {
            throw ConfigurationError("--command-topic \(c.commandTopic) must differ from every --topic, from --dlq-topic and from --state-topic")
        }
        if c.topics.contains(c.stateTopic) || c.stateTopic == c.deadLetterTopic {
            throw ConfigurationError("--state-topic \(c.stateTopic) must differ from every --topic and from --dlq-topic")
        }
        if c.topics.contains(c.deadLetterTopic) {
            throw ConfigurationError("--dlq-topic \(c.deadLetterTopic) must differ from every --topic (the bridge would read its own dead letters)")
        }
        if let (v, src) = value(flags.groupId, Env.groupId) { c.groupId = try nonEmpty(v, "--group-id", Env.groupId, src) }

        var entries = flags.kafkaConfig.map { ($0, "") }
        if flags.kafkaConfig.isEmpty, let env = environment[Env.kafkaConfig] {
            entries = env.split(whereSeparator: { $0 == ";" || $0 == "\n" }).map { (String($0), Env.kafkaConfig) }
        }
        for (entry, src) in entries {
            let text = entry.trimmingWhitespace()
            if text.isEmpty { continue }
            guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
                throw ConfigurationError("\(describe("--kafka-config", Env.kafkaConfig, src)) expects key=value, got \"\(text.prefix(80))\"")
            }
            c.kafkaProperties[String(text[..<eq])] = String(text[text.index(after: eq)...])
        }
        if let (v, src) = value(flags.host, Env.host) { c.host = try nonEmpty(v, "--host", Env.host, src) }
        if let (v, src) = value(flags.port, Env.port) { c.port = try port(v, "--port", Env.port, src) }
        if let (v, src) = value(flags.adminPort, Env.adminPort) { c.adminPort = try port(v, "--admin-port", Env.adminPort, src) }
        if c.port != 0 && c.port == c.adminPort {
            throw ConfigurationError("--port and --admin-port must differ (both are \(c.port))")
        }
        if let (v, src) = value(flags.schemas, Env.schemas) { c.schemasPath = try nonEmpty(v, "--schemas", Env.schemas, src) }
        if let (v, src) = value(flags.webRoot, Env.webRoot) { c.webRoot = try nonEmpty(v, "--web-root", Env.webRoot, src) }
        if let (v, src) = value(flags.apiDocs, Env.apiDocs) { c.apiDocs = try nonEmpty(v, "--api-docs", Env.apiDocs, src) }
        if let (v, src) = value(flags.logLevel, Env.logLevel) {
            guard let level = Logger.Level(rawValue: v.trimmingWhitespace().lowercased()) else {
                throw ConfigurationError(
                    "\(describe("--log-level", Env.logLevel, src)) must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(v)\"")
            }
            c.logLevel = level
        }
        if let (v, src) = value(flags.logFormat, Env.logFormat) {
            guard let format = LogFormat(rawValue: v.trimmingWhitespace().lowercased()) else {
                throw ConfigurationError("\(describe("--log-format", Env.logFormat, src)) must be text or json, got \"\(v)\"")
            }
            c.logFormat = format
        }
        if let flag = flags.demoMonitor {
            c.demoMonitor = flag
        } else if let env = environment[Env.demoMonitor], !env.isEmpty {
            switch env.lowercased() {
            case "1", "true", "yes", "on": c.demoMonitor = true
            case "0", "false", "no", "off": c.demoMonitor = false
            default: throw ConfigurationError("\(Env.demoMonitor) (twin of --demo-monitor) must be true or false, got \"\(env)\"")
            }
        } else {
            c.demoMonitor = c.isEmbedded
        }
        if let (v, src) = value(flags.sendQueue, Env.sendQueue) { c.sendQueueCapacity = try positive(v, "--send-queue", Env.sendQueue, src, max: 1_000_000) }
        if let (v, src) = value(flags.historyPerJob, Env.historyPerJob) {
            c.historyPerJob = try positive(v, "--history-per-job", Env.historyPerJob, src, max: 1_000_000)
        }
        if let (v, src) = value(flags.finishedJobRetention, Env.finishedJobRetention) {
            c.finishedJobRetention = try positive(v, "--finished-job-retention", Env.finishedJobRetention, src, max: 315_360_000)
        }
        if let (v, src) = value(flags.idleJobRetention, Env.idleJobRetention) {
            c.idleJobRetention = try positive(v, "--idle-job-retention", Env.idleJobRetention, src, max: 315_360_000)
        }
        if let (v, src) = value(flags.maxConnections, Env.maxConnections) {
            c.maxConnections = try positive(v, "--max-connections", Env.maxConnections, src)
        }
        if let (v, src) = value(flags.maxConnectionsPerIP, Env.maxConnectionsPerIP) {
            c.maxConnectionsPerIP = try positive(v, "--max-connections-per-ip", Env.maxConnectionsPerIP, src)
        }
        if let (v, src) = value(flags.clientMessageRate, Env.clientMessageRate) {
            c.clientMessageRate = try positive(v, "--client-message-rate", Env.clientMessageRate, src, max: 1_000_000)
        }
        if let n = try integer("--max-connections-per-subject", Env.maxConnectionsPerSubject, flags.maxConnectionsPerSubject) { c.maxConnectionsPerSubject = n }
        if let n = try integer("--send-queue-bytes", Env.sendQueueBytes, flags.sendQueueBytes, max: 1 << 30) { c.sendQueueBytes = n }
        if let n = try integer("--max-jobs", Env.maxJobs, flags.maxJobs) { c.maxJobs = n }
        if let n = try integer("--max-videos-per-job", Env.maxVideosPerJob, flags.maxVideosPerJob) { c.maxVideosPerJob = n }
        if let n = try integer("--max-event-ids-per-job", Env.maxEventIdsPerJob, flags.maxEventIdsPerJob) { c.maxEventIdsPerJob = n }
        if let n = try integer("--max-clock-skew", Env.maxClockSkew, flags.maxClockSkew, max: 315_360_000) { c.maxClockSkew = n }
        if let n = try integer("--dlq-max-bytes", Env.deadLetterMaxBytes, flags.deadLetterMaxBytes, max: 1 << 30) {
            guard n >= 4096 else { throw ConfigurationError("--dlq-max-bytes must be at least 4096 (room for the headers), got \(n)") }
            c.deadLetterMaxBytes = n
        }
        if let n = try integer("--http-idle-timeout", Env.httpIdleTimeout, flags.httpIdleTimeout, max: 86_400) { c.httpIdleTimeout = n }
        if let n = try integer("--max-http-connections", Env.maxHTTPConnections, flags.maxHTTPConnections) { c.maxHTTPConnections = n }
        if let n = try integer("--max-http-connections-per-ip", Env.maxHTTPConnectionsPerIP, flags.maxHTTPConnectionsPerIP) {
            c.maxHTTPConnectionsPerIP = n
        }
        if let (v, src) = value(flags.jwtLeeway, Env.jwtLeeway) {
            guard let n = Int(v.trimmingWhitespace()), (0...3600).contains(n) else {
                throw ConfigurationError("\(describe("--jwt-leeway", Env.jwtLeeway, src)) must be an integer from 0 to 3600 seconds, got \"\(v.prefix(40))\"")
            }
            c.auth.leewaySeconds = n
        }
        c.trustedProxies =
            flags.trustedProxies.isEmpty
            ? (environment[Env.trustedProxies]?.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty } ?? [])
            : flags.trustedProxies
        if case .failure(let error) = TrustedProxies.parse(c.trustedProxies) { throw error }
        if let (v, src) = value(flags.jwtSecret, Env.jwtSecret) { c.auth.jwtSecret = try nonEmpty(v, "--jwt-secret", Env.jwtSecret, src) }
        if let (v, src) = value(flags.jwtPublicKey, Env.jwtPublicKey) {
            c.auth.publicKeyFile = try nonEmpty(v, "--jwt-public-key", Env.jwtPublicKey, src)
        }
        if let (v, src) = value(flags.jwks, Env.jwks) { c.auth.jwksFile = try nonEmpty(v, "--jwks", Env.jwks, src) }
        if let (v, src) = value(flags.jwtIssuer, Env.jwtIssuer) { c.auth.issuer = try nonEmpty(v, "--jwt-issuer", Env.jwtIssuer, src) }
        if let (v, src) = value(flags.jwtAudience, Env.jwtAudience) { c.auth.audience = try nonEmpty(v, "--jwt-audience", Env.jwtAudience, src) }
        if flags.insecureNoAuth {
            c.auth.insecureNoAuth = true
        } else if let env = environment[Env.insecureNoAuth], !env.isEmpty {
            switch env.lowercased() {
            case "1", "true", "yes", "on": c.auth.insecureNoAuth = true
            case "0", "false", "no", "off": c.auth.insecureNoAuth = false
            default: throw ConfigurationError("\(Env.insecureNoAuth) (twin of --insecure-no-auth) must be true or false, got \"\(env)\"")
            }
        }
        c.auth.allowedOrigins =
            flags.allowedOrigins.isEmpty
            ? (environment[Env.allowedOrigins]?.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty } ?? [])
            : flags.allowedOrigins
        if c.auth.insecureNoAuth && c.auth.hasKeys {
            throw ConfigurationError("--insecure-no-auth contradicts --jwt-secret/--jwt-public-key/--jwks; choose one")
        }
        if !c.auth.hasKeys && !c.auth.insecureNoAuth {
            guard c.isEmbedded else {
                throw ConfigurationError(
                    "no token verification is configured: set --jwt-secret (JWT_SECRET), --jwt-public-key (JWT_PUBLIC_KEY_FILE) or --jwks (JWT_JWKS_FILE), or accept anyone with --insecure-no-auth"
                )
            }
            c.auth.insecureNoAuth = true
            c.authDisabledForEmbeddedDefault = true
        }
        return c
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        let text = String(self)
        guard let first = text.firstIndex(where: { !$0.isWhitespace }), let last = text.lastIndex(where: { !$0.isWhitespace }) else {
            return ""
        }
        return String(text[first...last])
    }
}
