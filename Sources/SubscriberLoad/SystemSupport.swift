#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The wall clock, in the unit of `occurred_at`: read once per received message, so no Foundation `Date`.
enum WallClock {
    /// Milliseconds since the Unix epoch.
    @inline(__always)
    static func nowMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1000 + Int64(time.tv_nsec) / 1_000_000
    }
}

/// The process's open-file limit, which caps how many connections it can hold (one descriptor each).
public enum OpenFileLimit {
    /// Raises the soft limit to the hard limit (where the hard limit is unlimited, as on macOS, to a large finite
    /// value the kernel accepts) and returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHardLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max == unlimited ? rlim_t(1 << 20) : limit.rlim_max
            if setrlimit(resource, &raised) != 0 {
                #if canImport(Darwin)
                raised.rlim_cur = rlim_t(OPEN_MAX)  // macOS refuses more than OPEN_MAX without entitlements
                _ = setrlimit(resource, &raised)
                #endif
            }
            _ = getrlimit(resource, &limit)
        }
        return UInt64(limit.rlim_cur)
    }

    #if canImport(Glibc)
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    /// glibc's `RLIM_INFINITY` is `(rlim_t) -1`, a macro Swift cannot import.
    private static let unlimited = rlim_t.max
    #else
    private static let resource = RLIMIT_NOFILE
    private static let unlimited = RLIM_INFINITY
    #endif
}
