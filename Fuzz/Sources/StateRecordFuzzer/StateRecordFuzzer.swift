import Foundation
import FuzzDriver
import ProgressAggregation

/// State records are input too (anyone who can write the state topic, or a bug in an older version, can put
/// anything there). Every record must be refused or restored into a job that can be served and changed —
/// never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    let decoder = JSONDecoder()
    if var job = try? decoder.decode(JobAggregate.self, from: bytes) {
        let video = try? decoder.decode(VideoProgress.self, from: bytes)
        job.restore(videos: video.map { [$0] } ?? [], limits: AggregateLimits(maxVideos: 10, maxEventIds: 4))
        _ = job.progress().json.serialized()
        for video in job.videos.values { _ = video.json.serialized() }
        _ = try? JSONEncoder().encode(job)
    } else if let video = try? decoder.decode(VideoProgress.self, from: bytes) {
        _ = video.json.serialized()
        _ = try? JSONEncoder().encode(video)
    }
    return 0
}

@_cdecl("StateRecordFuzzer_main")
func entryPoint(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv) { data, size in fuzz(data, size) }
}
