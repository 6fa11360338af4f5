import Hummingbird
import JSONSchema
import Kafka
import Logging
import ProgressAggregation
import ProgressContract
import ServiceLifecycle

/// A start-up problem, reported with a precise message before anything runs.
public struct StartupError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Wires the data path from a configuration and runs it until SIGTERM/SIGINT:
/// Kafka in → contract → aggregation → delivery (WebSocket, REST, metrics).
public enum BridgeRuntime {
    /// Loads and compiles the contract's schemas; fails if a file is unreadable or uses an unknown keyword.
    public static func loadValidator(schemasPath: String) throws(StartupError) -> JSONSchemaValidator {
        var registry = SchemaRegistry()
        do {
            try registry.addDirectory(schemasPath, uriPrefix: ContractSchemas.uriPrefix)
            return try ContractSchemas.envelopeValidator(from: registry)
        } catch {
            throw StartupError("cannot load the event schemas from --schemas \(schemasPath): \(error.message)")
        }
    }

    /// Runs the bridge.
    public static func run(_ configuration: BridgeConfiguration, logger: Logger) async throws {
        let validator = try loadValidator(schemasPath: configuration.schemasPath)
        logger.info("schemas loaded", metadata: ["path": "\(configuration.schemasPath)", "entry": "\(validator.schemaURI)"])

        var mockCluster: KafkaMockCluster?
        let bootstrap: String
        var kafkaProperties = configuration.kafkaProperties
        if let external = configuration.kafkaBootstrap {
            bootstrap = external
        } else {
            let mock = try KafkaMockCluster(brokers: 1, logger: logger)
            for topic in configuration.topics { try mock.createTopic(topic, partitions: 4) }
            try mock.createTopic(configuration.deadLetterTopic, partitions: 1)
            try mock.createTopic(configuration.stateTopic, partitions: 4)
            try mock.createTopic(configuration.commandTopic, partitions: 4)
            mockCluster = mock
            bootstrap = mock.bootstrapServers
            // The mock does not wake a waiting Fetch when data arrives: keep fetch waits short.
            kafkaProperties = ["fetch.wait.max.ms": "10"].merging(kafkaProperties) { _, given in given }
            logger.notice(
                "embedded Kafka mock cluster started (no --kafka-bootstrap given)",
                metadata: ["bootstrap_servers": "\(bootstrap)", "topics": "\(configuration.topics.joined(separator: ","))"])
        }

        let authenticator: Authenticator
        if configuration.auth.insecureNoAuth {
            authenticator = Authenticator(allowedOrigins: configuration.auth.allowedOrigins)
            if configuration.authDisabledForEmbeddedDefault {
                logger.warning("AUTHENTICATION IS OFF: the embedded default accepts every subscriber; configure --jwt-secret, --jwt-public-key or --jwks")
            } else {
                logger.critical("AUTHENTICATION IS OFF (--insecure-no-auth): anyone who reaches this port can watch every job")
            }
        } else {
            authenticator = try await Authenticator(settings: configuration.auth)
            logger.info("bearer tokens required", metadata: ["issuer": "\(configuration.auth.issuer ?? "any")", "audience": "\(configuration.auth.audience ?? "any")"])
        }
        let metrics = BridgeMetrics()
        let readiness = Readiness()
        let aggregateLimits = AggregateLimits(maxVideos: configuration.maxVideosPerJob, maxEventIds: configuration.maxEventIdsPerJob)
        let store = JobStore(
            limits: StoreLimits(
                historyPerJob: configuration.historyPerJob, maxJobs: configuration.maxJobs, aggregate: aggregateLimits,
                finishedJobRetentionMs: Int64(configuration.finishedJobRetention) * 1000, idleJobRetentionMs: Int64(configuration.idleJobRetention) * 1000),
            metrics: metrics)
        let consumerProperties = KafkaProperties(kafkaProperties.filter { !producerOnlyProperties.contains($0.key) })
        // Every replica reads every input partition (librdkafka's statistics feed readiness and the round-trip gauges)…
        let reader = try KafkaPartitionReader(
            bootstrapServers: bootstrap,
            properties: KafkaProperties(["statistics.interval.ms": "5000"].merging(consumerProperties.values) { _, given in given }), logger: logger)
        // …and owns some of them through the consumer group.
        let membership = try KafkaGroupMembership(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: bootstrap, groupId: configuration.groupId, topics: configuration.topics, properties: consumerProperties, autoCommit: false),
            logger: logger)
        let producerProperties = KafkaProperties(kafkaProperties.filter { !consumerOnlyProperties.contains($0.key) })
        // A dead-letter write that cannot succeed should say so within half a minute, not librdkafka's default 5.
        let deadLetterProducer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: bootstrap,
                properties: KafkaProperties(["message.timeout.ms": "30000"].merging(producerProperties.values) { _, given in given })),
            logger: logger)

        // State records are many and alike: compress them (unless configured otherwise).
        let changelogProducer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: bootstrap, properties: KafkaProperties(["compression.type": "lz4"].merging(producerProperties.values) { _, given in given })),
            logger: logger)
        let durability = IngestService.Durability(
            changelog: StateChangelog(producer: changelogProducer, topic: configuration.stateTopic), bootstrapServers: bootstrap,
            properties: consumerProperties)
        var services: [any Service] = [
            IngestService(
                reader: reader, membership: membership, deadLetterProducer: deadLetterProducer, deadLetterTopic: configuration.deadLetterTopic,
                decoder: EventDecoder(validator: validator), store: store, metrics: metrics, readiness: readiness, logger: logger,
                durability: durability, maxClockSkewMs: Int64(configuration.maxClockSkew) * 1000, deadLetterMaxBytes: configuration.deadLetterMaxBytes)
        ]
        let publicURL = "ws://localhost:\(configuration.port)"
        if configuration.demoMonitor {
            let demoProducer = try KafkaProducer(
                configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap, properties: producerProperties), logger: logger)
            let commandFollower = try KafkaTopicFollower(
                bootstrapServers: bootstrap, topic: configuration.commandTopic, groupId: "progress-bridge-demo-monitor", properties: consumerProperties,
                logger: logger)
            services.append(
                DemoMonitor(producer: demoProducer, topic: configuration.topics[0], commands: commandFollower, publicURL: publicURL, logger: logger))
        }

        let settings = DeliverySettings(
            sendQueueCapacity: configuration.sendQueueCapacity, sendQueueBytes: configuration.sendQueueBytes,
            clientMessagesPerSecond: Double(configuration.clientMessageRate), maxConnections: configuration.maxConnections,
            maxConnectionsPerAddress: configuration.maxConnectionsPerIP, maxConnectionsPerSubject: configuration.maxConnectionsPerSubject,
            trustedProxies: (try? TrustedProxies.parse(configuration.trustedProxies).get()) ?? .none,
            maxHTTPConnections: configuration.maxHTTPConnections, maxHTTPConnectionsPerAddress: configuration.maxHTTPConnectionsPerIP,
            httpIdleTimeout: .seconds(configuration.httpIdleTimeout))
        let gate = HTTPConnectionGate(settings: settings, metrics: metrics)
        // Commands go out on their own producer (idempotent, acks=all by default), answered once Kafka has them.
        let commandProducer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: bootstrap,
                // The 5 s answer is promised: a configured message.timeout.ms (or its alias) does not apply here.
                properties: KafkaProperties(
                    producerProperties.values.filter { !["message.timeout.ms", "delivery.timeout.ms"].contains($0.key) }
                        .merging(["message.timeout.ms": String(JobCommandRelay.publishTimeoutMs)]) { _, ours in ours })),
            logger: logger)
        let commands = JobCommandRelay(
            topic: configuration.commandTopic, producer: commandProducer, store: store,
            validator: try JobCommandRelay.commandValidator(schemasPath: configuration.schemasPath), metrics: metrics, logger: logger)
        let assets = try WebAssets.load(from: configuration.webRoot)
        let documents = try APIDocuments.load(from: configuration.apiDocs, schemasPath: configuration.schemasPath)
        if assets.files[WebAssets.indexName] == nil {
            logger.warning("no dashboard page: --web-root has no index.html", metadata: ["path": "\(configuration.webRoot)"])
        } else if configuration.isEmbedded {
            // The last thing a newcomer running the embedded default needs to read: where to look.
            readiness.onFirstReady { logger.notice("ready: the live dashboard is at http://localhost:\(configuration.port)/") }
        }
        let app = buildApplication(
            store: store, metrics: metrics, settings: settings, authenticator: authenticator,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "progress-bridge"),
            assets: assets, documents: documents, commands: commands, gate: gate,
            onServerRunning: { channel in
                logger.notice(
                    "serving WebSocket and REST",
                    metadata: [
                        "port": "\(channel.localAddress?.port ?? configuration.port)", "websocket": "\(publicURL)/?job_id=…",
                        "rest": "http://localhost:\(configuration.port)/api/v1/bulk-jobs",
                        "dashboard": "http://localhost:\(channel.localAddress?.port ?? configuration.port)/",
                    ])
            },
            logger: logger)
        let admin = Application(
            router: buildAdminRouter(metrics: metrics, readiness: readiness),
            configuration: .init(address: .hostname(configuration.host, port: configuration.adminPort), serverName: "progress-bridge-admin"),
            onServerRunning: { channel in
                logger.notice("serving admin", metadata: ["port": "\(channel.localAddress?.port ?? configuration.adminPort)", "metrics": "http://localhost:\(configuration.adminPort)/metrics"])
            },
            logger: logger)
        services.append(app)
        services.append(SubscriberDrain(store: store, gate: gate, logger: logger))  // shut down before `app`
        services.append(admin)

        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        withExtendedLifetime(mockCluster) {}
        logger.info("stopped")
    }

    /// And the other way round.
    static let producerOnlyProperties: Set<String> = [
        "acks", "linger.ms", "enable.idempotence", "message.timeout.ms", "compression.type", "batch.size", "retries",
        "queue.buffering.max.ms", "queue.buffering.max.messages", "delivery.timeout.ms", "transactional.id",
    ]

    /// librdkafka warns when a producer is given consumer properties; keep them apart.
    static let consumerOnlyProperties: Set<String> = [
        "group.id", "fetch.wait.max.ms", "auto.offset.reset", "heartbeat.interval.ms", "group.protocol.type", "enable.auto.commit", "auto.commit.interval.ms",
        "enable.auto.offset.store", "session.timeout.ms", "max.poll.interval.ms", "group.instance.id", "fetch.min.bytes",
        "fetch.max.bytes", "max.partition.fetch.bytes", "isolation.level", "partition.assignment.strategy", "enable.partition.eof",
    ]
}
