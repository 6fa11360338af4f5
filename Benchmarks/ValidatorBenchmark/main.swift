// Prints events/s for (a) parse only, (b) validate pre-parsed, (c) parse + validate, on a mix of
// contract events (~300 bytes each), and Foundation's JSONSerialization parse for comparison.
// Run: swift run -c release validator-benchmark [seconds-per-measurement]
import Foundation
import JSONSchema
import ProgressContract

let secondsPerRun = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 2.0
let schemas = CommandLine.arguments.dropFirst(2).first ?? "schemas"

var registry = SchemaRegistry()
try registry.addDirectory(schemas, uriPrefix: ContractSchemas.uriPrefix)
let validator = try ContractSchemas.envelopeValidator(from: registry)
let decoder = EventDecoder(validator: validator)

func envelope(_ i: Int, _ type: String, _ data: String) -> String {
    #"{"schema_version":1,"event_id":"01JDA5Q6X8M3V0F4T2B9K\#(String(format: "%05d", i))","type":"\#(type)","job_id":"job_01HABCDEF0123456789","occurred_at":"2026-11-24T10:15:30.123Z","seq":\#(i),"data":\#(data)}"#
}
let samples: [String] = (0..<90).map { i in
    switch i % 9 {
    case 0: envelope(i, "video.completed", #"{"video_id":"vid_0042","processing_ms":48210,"attempt":1,"output_url":"s3://content-outputs/job_01HABCDEF0123456789/vid_0042.mp4"}"#)
    case 1: envelope(i, "video.updated", #"{"video_id":"vid_0042","state":"processing","progress_percent":42.5,"stage":"render","attempt":1}"#)
    case 2: envelope(i, "job.progress", #"{"total_videos":500,"completed":212,"failed":3,"skipped":1,"processing":6,"percent_complete":43.2}"#)
    case 3: envelope(i, "video.created", #"{"video_id":"vid_0043","row_index":44,"title":"Spring campaign, variant B"}"#)
    case 4: envelope(i, "video.failed", #"{"video_id":"vid_0044","error":{"code":"RENDER_TIMEOUT","message":"renderer did not answer"},"retryable":true,"attempt":2}"#)
    case 5: envelope(i, "job.state_changed", #"{"from":"pending","to":"running","job":{"title":"Campaign","total_videos":500,"processing_deadline_ms":7200000,"priority":"high"}}"#)
    case 6: envelope(i, "job.completed", #"{"summary":{"total_videos":500,"completed":490,"failed":10,"skipped":0,"duration_ms":3600000}}"#)
    case 7: envelope(i, "job.failed", #"{"error":{"code":"QUOTA","message":"render quota exhausted"}}"#)
    default: envelope(i, "job.canceled", #"{"reason":"operator request","canceled_by":"ops@example.com"}"#)
    }
}
let bytes = samples.map { Array($0.utf8) }
let datas = samples.map { Data($0.utf8) }
let parsed = try bytes.map { try JSONParser().parse($0) }
precondition(parsed.allSatisfy { validator.isValid($0) }, "benchmark events must be valid")
let meanSize = bytes.map(\.count).reduce(0, +) / bytes.count

/// BENCH_ONLY=b runs only the lines whose name starts with "(b)" (for profiling one path).
let only = ProcessInfo.processInfo.environment["BENCH_ONLY"]

func measure(_ name: String, _ body: (Int) -> Bool) {
    if let only, !name.hasPrefix("(\(only))") { return }
    var count = 0
    var ok = true
    let clock = ContinuousClock()
    let start = clock.now
    while clock.now - start < .seconds(secondsPerRun) {
        for i in 0..<1000 { ok = body(count &+ i) && ok }
        count += 1000
    }
    let elapsed = clock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    precondition(ok)
    print("\(name.padding(toLength: 44, withPad: " ", startingAt: 0)) \(String(format: "%12.0f", Double(count) / seconds)) events/s")
}

print("progress-bridge validator benchmark: \(samples.count) events, mean \(meanSize) bytes, \(secondsPerRun) s per line, one thread")
measure("(a) parse only (JSONParser)") { i in (try? JSONParser().parse(bytes[i % bytes.count])) != nil }
let knownParser = JSONParser(knownStrings: validator.knownStrings)
measure("(a) parse, the schemas' names made once") { i in (try? knownParser.parse(bytes[i % bytes.count])) != nil }
measure("    parse only (Foundation JSONSerialization)") { i in (try? JSONSerialization.jsonObject(with: datas[i % datas.count])) != nil }
measure("(b) validate pre-parsed") { i in validator.isValid(parsed[i % parsed.count]) }
measure("(c) parse + validate") { i in
    guard let value = try? JSONParser().parse(bytes[i % bytes.count]) else { return false }
    return validator.isValid(value)
}
measure("    full decode (parse, validate, typed event)") { i in
    if case .success = decoder.decode(bytes[i % bytes.count]) { return true }
    return false
}
