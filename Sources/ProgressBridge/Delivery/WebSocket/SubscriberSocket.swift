#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// A subscriber's connected socket, written straight from its channel's event loop with one non-blocking `send`:
/// a job's message to thousands of subscribers costs each of them that system call and little else — not NIO's
/// pipeline walk, pending-writes queue and flush, each touching several of the subscriber's cold objects
/// (`perf` with 10,000 subscribers: ~28 % of the bridge's samples outside the kernel's own `write`), nor the file
/// layer of `write(2)`.
///
/// NIO owns the descriptor (it reads it, and closes it on the event loop) but does not hand it out; its socket
/// channels name it in their description (`SocketChannel { BaseSocket { fd=12 }, … }`). The number read there is
/// used only once it is shown to be the channel's: the socket's `SO_COOKIE` (the kernel's id of a socket) read
/// through that number must equal the one NIO reads through its own descriptor, at the same moment on the event loop.
/// That proves the description was read right, nothing more: that the number stays the channel's rests on the rule
/// below. A channel whose description names no descriptor, or whose cookies differ — and every channel where
/// `SO_COOKIE` is not what this reads (it is Linux's, since 4.12) — gets no `SubscriberSocket`, and its messages go
/// through NIO as every other write does.
///
/// Written only on the event loop, only while the channel is active (NIO closes the descriptor on the event loop,
/// and marks the channel inactive before any other code runs there), and only while NIO has nothing of its own
/// waiting to be written to it (see `SubscriberChannelDrain.FrameWriter`), so bytes never overtake each other.
/// Nothing between the writer and the socket may change the bytes: the bridge serves plain TCP (a TLS handler there
/// would need this turned off).
struct SubscriberSocket {
    let descriptor: CInt

    /// What one `send` did.
    enum Sent: Equatable {
        /// The socket took every byte.
        case all
        /// The socket took the first `count` bytes (0: none, its buffer is full); the rest is the caller's to write.
        case part(Int)
        /// The socket refused the write and took nothing (the peer reset it, the output was shut down, …): the caller
        /// hands the bytes to NIO, whose own write meets that error or the one that follows from it and closes the
        /// channel as for any other.
        case failed
    }

    /// Looks for `channel`'s socket (on its event loop, once the channel is active) and calls `found` with it, on the
    /// event loop, if it is shown to be the channel's; never calls it otherwise.
    static func find(for channel: any Channel, found: @escaping (SubscriberSocket) -> Void) {
        channel.eventLoop.preconditionInEventLoop()
        guard let number = descriptor(named: String(describing: channel)), let provider = channel as? any SocketOptionProvider else { return }
        // On the event loop NIO answers at once; the callback runs here, and on the loop in any case.
        let nioCookie: EventLoopFuture<UInt64> = provider.unsafeGetSocketOption(
            level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: Self.soCookie))
        nioCookie.assumeIsolated().whenSuccess { cookie in
            guard channel.isActive, refers(number, toSocketWithCookie: cookie) else { return }
            found(SubscriberSocket(descriptor: number))
        }
    }

    /// Whether `descriptor` is open on the socket whose `SO_COOKIE` is `cookie`.
    static func refers(_ descriptor: CInt, toSocketWithCookie cookie: UInt64) -> Bool {
        Self.cookie(of: descriptor) == cookie
    }

    /// The descriptor a NIO socket channel's description names (`fd=12`), if it names one.
    static func descriptor(named description: String) -> CInt? {
        guard let marker = description.firstRange(of: "BaseSocket { fd=") else { return nil }
        let digits = description[marker.upperBound...].prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 9, let number = CInt(digits), number >= 0 else { return nil }
        return number
    }

    /// `SO_COOKIE` (Linux 4.12 and later; not in every C library's headers).
    private static let soCookie: CInt = 57

    /// The `SO_COOKIE` of the socket `descriptor` refers to, if it is a socket.
    static func cookie(of descriptor: CInt) -> UInt64? {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        guard getsockopt(descriptor, SOL_SOCKET, soCookie, &cookie, &length) == 0, length == MemoryLayout<UInt64>.size else { return nil }
        return cookie
    }

    /// Writes as much of `bytes` as the socket takes now, without waiting.
    func send(_ bytes: ByteBuffer) -> Sent {
        bytes.withUnsafeReadableBytes { buffer in
            guard let base = buffer.baseAddress, buffer.count > 0 else { return .all }
            while true {
                #if canImport(Glibc)
                let flags = CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL)
                let count = Glibc.send(descriptor, base, buffer.count, flags)
                #else
                let count = Darwin.send(descriptor, base, buffer.count, MSG_DONTWAIT)
                #endif
                if count == buffer.count { return .all }
                if count >= 0 { return .part(count) }
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return .part(0)
                default: return .failed
                }
            }
        }
    }
}
