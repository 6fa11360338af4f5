import Foundation
import JSONSchema
import Logging

/// One JSON object per line on standard error: `ts`, `level`, `logger`, `message`, metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: JSONObject = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            object[key] = .string("\(value)")
        }
        object["ts"] = .string(RFC3339.format(milliseconds: WallClock.nowMs()))
        object["level"] = .string(event.level.rawValue)
        object["logger"] = .string(label)
        object["message"] = .string("\(event.message)")
        let line = JSONValue.object(object).serialized() + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
