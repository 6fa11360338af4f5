// swift-tools-version:6.1
import PackageDescription

// libFuzzer target for the decode + validate path. Build and run with ../scripts/fuzz.sh.
let package = Package(
    name: "progress-bridge-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "EventFuzzer",
            dependencies: [
                .product(name: "JSONSchema", package: "main"),
                .product(name: "ProgressContract", package: "main"),
            ]
        )
    ]
)
