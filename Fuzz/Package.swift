// swift-tools-version:6.1
import Foundation
import PackageDescription

// libFuzzer targets: the decode + validate path, what subscribers send, and state records. Build and run with ../scripts/fuzz.sh.
// A path dependency's identity is its directory name, which depends on where the repository is cloned.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent()

let package = Package(
    name: "progress-bridge-fuzz",
    dependencies: [.package(path: root.path)],
    targets: [
        // The libFuzzer entry point every fuzzer hands over to.
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "EventFuzzer",
            dependencies: [
                "FuzzDriver",
                .product(name: "JSONSchema", package: root.lastPathComponent),
                .product(name: "ProgressContract", package: root.lastPathComponent),
            ]
        ),
        // What subscribers and REST clients send: URL queries, client messages, list queries.
        .executableTarget(
            name: "SubscriberFuzzer",
            dependencies: [
                "FuzzDriver",
                .product(name: "JSONSchema", package: root.lastPathComponent),
                .product(name: "SubscriberProtocol", package: root.lastPathComponent),
            ]
        ),
        // State records as restored from the state topic.
        .executableTarget(
            name: "StateRecordFuzzer",
            dependencies: ["FuzzDriver", .product(name: "ProgressAggregation", package: root.lastPathComponent)]
        ),
    ]
)
