import Foundation

/// Which peers may tell the bridge a client's address (`X-Forwarded-For`, `Forwarded`): the ingress
/// controllers and load balancers in front of it. Behind an ingress every connection comes from the
/// ingress, so without this the per-address limit would count everyone as one client; from anyone
/// else the headers are ignored, since a client could name any address it likes.
public struct TrustedProxies: Sendable, Equatable {
    /// One IPv4 or IPv6 network.
    struct Network: Sendable, Equatable {
        let bytes: [UInt8]
        let prefixLength: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var remaining = prefixLength
            for (a, b) in zip(address, bytes) where remaining > 0 {
                let bits = min(8, remaining)
                let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
                if a & mask != b & mask { return false }
                remaining -= bits
            }
            return true
        }
    }

    let networks: [Network]

    /// No proxy is trusted (the default): the peer's address is the client's.
    public static let none = TrustedProxies(networks: [])

    init(networks: [Network]) { self.networks = networks }

    /// Parses `ADDRESS` or `ADDRESS/PREFIX` entries (IPv4 or IPv6); the error names the bad entry.
    public static func parse(_ entries: [String]) -> Result<TrustedProxies, ConfigurationError> {
        var networks: [Network] = []
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1).map(String.init)
            guard let bytes = parts.first.flatMap(addressBytes) else {
                return .failure(ConfigurationError("--trusted-proxy \(entry.prefix(80)) is not an IP address or CIDR network"))
            }
            var prefix = bytes.count * 8
            if parts.count == 2 {
                guard let p = Int(parts[1]), (0...bytes.count * 8).contains(p) else {
                    return .failure(ConfigurationError("--trusted-proxy \(entry.prefix(80)) has an invalid prefix length"))
                }
                prefix = p
            }
            networks.append(Network(bytes: bytes, prefixLength: prefix))
        }
        return .success(TrustedProxies(networks: networks))
    }

    /// Whether `address` is a trusted proxy.
    public func trusts(_ address: String) -> Bool {
        guard !networks.isEmpty, let bytes = Self.addressBytes(address) else { return false }
        return networks.contains { $0.contains(bytes) }
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most address of
    /// `X-Forwarded-For` (else `Forwarded: for=`) that is not itself a trusted proxy.
    public func clientAddress(peer: String, forwardedFor: String?, forwarded: String?) -> String {
        guard trusts(peer) else { return peer }
        var chain: [String] = []
        if let forwardedFor, !forwardedFor.isEmpty {
            chain = forwardedFor.split(separator: ",").suffix(64).map { $0.trimmingWhitespace() }
        } else if let forwarded, !forwarded.isEmpty {
            chain = Self.forwardedFor(forwarded)
        }
        // Bounded: only the last 64 hops are read — the right end is what trusted proxies appended; the left end is
        // what the client wrote.
        for hop in chain.reversed() {
            let address = Self.stripPort(hop)
            guard Self.addressBytes(address) != nil else { return peer }  // garbage: fall back to the proxy itself
            if !trusts(address) { return address }
        }
        return chain.first.map(Self.stripPort).flatMap { Self.addressBytes($0) != nil ? $0 : nil } ?? peer
    }

    /// The `for=` values of a `Forwarded` header (RFC 7239).
    static func forwardedFor(_ header: String) -> [String] {
        header.split(separator: ",").suffix(64).compactMap { element in
            for pair in element.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
                if kv.count == 2, kv[0].lowercased() == "for" {
                    return kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
            }
            return nil
        }
    }

    /// The key per-address limits count by: an IPv4 address as it is, an IPv6 address by its /64 network (one
    /// host usually holds a whole /64, so counting /128s would let it open connections without limit).
    public static func limitKey(_ address: String) -> String {
        guard let bytes = addressBytes(address), bytes.count == 16 else { return address }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }

    /// `1.2.3.4:5678` → `1.2.3.4`; `[::1]:80` → `::1`.
    static func stripPort(_ text: String) -> String {
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return text
    }

    /// The address's bytes (4 or 16), or nil when it is not an IP address.
    static func addressBytes(_ text: String) -> [UInt8]? {
        guard text.utf8.count <= 64 else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        // An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d; it is the IPv4 address.
        if bytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] { return Array(bytes.suffix(4)) }
        return bytes
    }
}
