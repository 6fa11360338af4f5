// swift-tools-version:6.1
import PackageDescription

// The data path, left to right: Kafka in → contract (decode + validate) → aggregation → delivery.
let package = Package(
    name: "progress-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "progress-bridge", targets: ["progress-bridge"]),
        .executable(name: "bridge-load", targets: ["bridge-load"]),
        .library(name: "JSONSchema", targets: ["JSONSchema"]),
        .library(name: "ProgressContract", targets: ["ProgressContract"]),
        .library(name: "ProgressAggregation", targets: ["ProgressAggregation"]),
        .library(name: "SubscriberProtocol", targets: ["SubscriberProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // librdkafka, as Debian's librdkafka-dev installs it.
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // Kafka in: an owned Swift wrapper over librdkafka (consumer, producer, mock cluster).
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // A JSON parser and a draft 2020-12 JSON Schema validator; no dependency on the bridge.
        .target(name: "JSONSchema", exclude: ["MetaSchemas"]),
        // Contract: decode + validate the wire events. Pure, no I/O.
        .target(name: "ProgressContract", dependencies: ["JSONSchema"]),
        // Aggregation: per-job and per-video state. Pure, no I/O.
        .target(name: "ProgressAggregation", dependencies: ["ProgressContract", "JSONSchema"]),
        // What subscribers and REST clients send (URL query, client messages, list queries), parsed and bounded. Pure, no I/O.
        .target(name: "SubscriberProtocol", dependencies: ["JSONSchema", "ProgressContract"]),
        // The service: ingest, delivery (WebSocket, REST, metrics), configuration, demo monitor.
        .target(
            name: "ProgressBridge",
            dependencies: [
                "Kafka",
                "JSONSchema",
                "ProgressContract",
                "ProgressAggregation",
                "SubscriberProtocol",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "progress-bridge",
            dependencies: [
                "ProgressBridge",
                "Kafka",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Prints validation throughput; see BENCHMARKS.md.
        .executableTarget(
            name: "validator-benchmark",
            dependencies: ["JSONSchema", "ProgressContract"],
            path: "Benchmarks/ValidatorBenchmark"
        ),
        // The service's benchmark harness (ingest, latency, fan-out, restart, against raw librdkafka in one run); see BENCHMARKS.md.
        .executableTarget(
            name: "bridge-benchmark",
            dependencies: [
                "ProgressBridge", "Kafka", "CRdKafka", "JSONSchema", "ProgressAggregation", "ProgressContract", "SubscriberLoad",
                .target(name: "CLinuxEpoll", condition: .when(platforms: [.linux])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/BridgeBenchmark"
        ),
        // epoll, eventfd and per-thread CPU time: the load client's socket engine, the benchmark's raw fan-out.
        .systemLibrary(name: "CLinuxEpoll"),
        // A subscriber load generator (raw sockets and epoll on Linux, or SwiftNIO): many connections, delivery
        // latency, a seq audit.
        .target(
            name: "SubscriberLoad",
            dependencies: [
                .target(name: "CLinuxEpoll", condition: .when(platforms: [.linux])),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        // Its command, for operators and benchmarks; see Sources/bridge-load/README.md.
        .executableTarget(
            name: "bridge-load",
            dependencies: [
                "SubscriberLoad",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            exclude: ["README.md"]
        ),
        .testTarget(
            name: "SubscriberLoadTests",
            dependencies: [
                "SubscriberLoad", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]),
        .testTarget(name: "JSONSchemaTests", dependencies: ["JSONSchema"]),
        .testTarget(name: "ProgressContractTests", dependencies: ["ProgressContract"]),
        .testTarget(
            name: "ProgressAggregationTests",
            dependencies: ["ProgressAggregation", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(
            name: "ProgressBridgeTests",
            dependencies: [
                "ProgressBridge",
                "SubscriberProtocol",
                "Kafka",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
