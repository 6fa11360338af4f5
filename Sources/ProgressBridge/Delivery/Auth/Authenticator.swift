import Foundation
import JSONSchema
import JWTKit
import Logging
import SubscriberProtocol

/// How subscribers and REST callers prove who they are.
public struct AuthSettings: Sendable, Equatable {
    /// HS256 shared secret.
    public var jwtSecret: String?
    /// PEM file with an RSA (RS256) or EC P-256 (ES256) public key.
    public var publicKeyFile: String?
    /// JWKS file (RS*/ES*/PS*/EdDSA keys, selected by `kid`).
    public var jwksFile: String?
    /// Required `iss`, when set.
    public var issuer: String?
    /// Required member of `aud`, when set.
    public var audience: String?
    /// Accept every request without a token (logged loudly at start-up).
    public var insecureNoAuth = false
    /// Browser `Origin`s allowed to open WebSockets; empty: any.
    public var allowedOrigins: [String] = []
    /// Seconds of clock skew tolerated on `exp` and `nbf`. Default 30.
    public var leewaySeconds = 30

    public init() {}

    /// Whether any verification key is configured.
    public var hasKeys: Bool { jwtSecret != nil || publicKeyFile != nil || jwksFile != nil }
}

/// What a verified token lets its bearer watch.
public struct Grant: Sendable, Equatable {
    /// Every job (`"jobs": ["*"]`, or authentication is off).
    public let allJobs: Bool
    public let jobs: Set<String>
    /// The token's `sub`, if it has one (for the per-subject connection limit).
    public var subject: String? = nil
    /// When the grant ends (`exp` plus the allowed clock skew); `nil` with authentication off.
    public var expiresAt: Date? = nil
    /// Jobs the bearer may pause, resume and cancel (the `control` claim), apart from watching: `["*"]` for all,
    /// which also lets it create jobs.
    public var controlAll = false
    public var controlJobs: Set<String> = []

    public static let everything = Grant(allJobs: true, jobs: [], controlAll: true)

    /// Whether the bearer may see `jobId`.
    public func allows(_ jobId: String) -> Bool { allJobs || jobs.contains(jobId) }

    /// Whether the bearer may send commands for `jobId` (it must also be allowed to see it).
    public func controls(_ jobId: String) -> Bool { allows(jobId) && (controlAll || controlJobs.contains(jobId)) }

    /// Whether the bearer may create jobs (`"control": ["*"]`).
    public var mayCreate: Bool { controlAll }
}

/// A refused request: 401 (no valid token) or 403 (valid token, not for this job).
public struct AuthFailure: Error, Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case unauthorized, forbidden }
    public let kind: Kind
    /// Safe to show: never echoes the token, never says whether a job exists.
    public let message: String

    static func unauthorized(_ message: String) -> AuthFailure { AuthFailure(kind: .unauthorized, message: message) }
    static func forbidden(_ jobId: String) -> AuthFailure {
        AuthFailure(kind: .forbidden, message: "the token does not grant access to job \(jobId.prefix(130))")
    }
}

/// The claims the bridge reads: `exp` (required), `nbf`, `iss`, `aud`, and `jobs`
/// (job ids the bearer may watch and control, or `["*"]`).
struct BridgeClaims: JWTPayload {
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var sub: SubjectClaim?
    var jobs: [String]
    /// Job ids the bearer may send commands for, or `["*"]` (which also allows creating jobs); absent: none.
    var control: [String]?

    /// `exp` and `nbf` are checked by `Authenticator` itself, with the configured leeway for clock skew.
    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Verifies bearer tokens (JWT) against the configured keys.
public struct Authenticator: Sendable {
    private let keys: JWTKeyCollection?
    private let settings: AuthSettings
    /// Header `alg`s accepted: only those of the configured keys, never `none`.
    private let allowedAlgorithms: Set<String>
    /// The one algorithm of each JWKS key, by `kid`: a token's header may not choose another.
    private let keyAlgorithms: [String: String]

    /// No verification: every request is granted everything (`--insecure-no-auth`, tests).
    public static let disabled = Authenticator(allowedOrigins: [])

    /// No token verification, but still the `Origin` allow-list.
    public init(allowedOrigins: [String]) {
        keys = nil
        var settings = AuthSettings()
        settings.allowedOrigins = allowedOrigins
        self.settings = settings
        allowedAlgorithms = []
        keyAlgorithms = [:]
    }

    /// Loads the keys; a missing or unreadable key file is a start-up error naming its flag.
    public init(settings: AuthSettings) async throws(StartupError) {
        self.settings = settings
        guard settings.hasKeys else {
            keys = nil
            allowedAlgorithms = []
            keyAlgorithms = [:]
            return
        }
        var pinned: [String: String] = [:]
        let collection = JWTKeyCollection()
        var algorithms = Set<String>()
        if let secret = settings.jwtSecret {
            guard secret.utf8.count >= 32 else {
                throw StartupError("--jwt-secret must be at least 32 bytes (HS256 needs a 256-bit secret)")
            }
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            algorithms.insert("HS256")
        }
        if let file = settings.publicKeyFile {
            guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw StartupError("--jwt-public-key \(file) cannot be read")
            }
            if let ec = try? ES256PublicKey(pem: pem) {
                await collection.add(ecdsa: ec, kid: settings.jwtSecret == nil ? nil : "public-key")
                algorithms.insert("ES256")
            } else if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
                await collection.add(rsa: rsa, digestAlgorithm: .sha256, kid: settings.jwtSecret == nil ? nil : "public-key")
                algorithms.insert("RS256")
            } else {
                throw StartupError("--jwt-public-key \(file) is not a PEM RSA or P-256 EC public key")
            }
        }
        if let file = settings.jwksFile {
            guard let json = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw StartupError("--jwks \(file) cannot be read")
            }
            do {
                let keySet = try JWKSAlgorithms.pin(json)
                _ = try await collection.add(jwksJSON: keySet.json)
                pinned = keySet.algorithms
                algorithms.formUnion(keySet.algorithms.values)
            } catch let error as StartupError {
                throw StartupError("--jwks \(file): \(error.message)")
            } catch {
                throw StartupError("--jwks \(file) is not a valid JWKS: \(error)")
            }
        }
        keys = collection
        allowedAlgorithms = algorithms
        keyAlgorithms = pinned
    }

    /// Whether requests are accepted without a token.
    public var isDisabled: Bool { keys == nil }

    /// Verifies `token`; with authentication off, everything is granted.
    public func authenticate(_ token: String?) async -> Result<Grant, AuthFailure> {
        guard let keys else { return .success(.everything) }
        guard let token, !token.isEmpty else { return .failure(.unauthorized("a bearer token is required")) }
        guard token.utf8.count <= 8192 else { return .failure(.unauthorized("the token is too long")) }
        guard let header = Self.header(token) else { return .failure(.unauthorized("the token is not a JWT")) }
        let alg = header.alg
        guard allowedAlgorithms.contains(alg) else {
            return .failure(.unauthorized("tokens signed with \(alg.prefix(16)) are not accepted"))
        }
        if let kid = header.kid, !keyAlgorithms.isEmpty {
            // With a JWKS, a key id must name one of its keys: an unknown (say, rotated-out) one must not fall
            // through to a default key.
            guard let pinned = keyAlgorithms[kid] else { return .failure(.unauthorized("the token's key is not known")) }
            guard pinned == alg else { return .failure(.unauthorized("key \(kid.prefix(64)) is used with \(pinned) only")) }
        }
        let claims: BridgeClaims
        do {
            claims = try await keys.verify(token, as: BridgeClaims.self)
        } catch {
            return .failure(.unauthorized("the token's signature or claims are invalid"))
        }
        let now = Date()
        let leeway = TimeInterval(settings.leewaySeconds)
        guard claims.exp.value.addingTimeInterval(leeway) > now, (claims.nbf?.value.addingTimeInterval(-leeway) ?? now) <= now else {
            return .failure(.unauthorized("the token is expired or not yet valid"))
        }
        if let issuer = settings.issuer, claims.iss?.value != issuer {
            return .failure(.unauthorized("the token's issuer is not accepted"))
        }
        if let audience = settings.audience, !(claims.aud?.value.contains(audience) ?? false) {
            return .failure(.unauthorized("the token is not meant for this audience"))
        }
        let all = claims.jobs.contains("*")
        // Control needs a requester: a command carries its `sub`, and idempotent retries are remembered per subject.
        let control = claims.sub == nil ? [] : (claims.control ?? [])
        let controlAll = control.contains("*")
        return .success(
            Grant(
                allJobs: all, jobs: all ? [] : Set(claims.jobs), subject: claims.sub?.value, expiresAt: claims.exp.value.addingTimeInterval(leeway),
                controlAll: controlAll, controlJobs: controlAll ? [] : Set(control)))
    }

    /// Authenticates and checks access to one job.
    public func authorize(_ token: String?, jobId: String) async -> Result<Grant, AuthFailure> {
        switch await authenticate(token) {
        case .failure(let failure): return .failure(failure)
        case .success(let grant): return grant.allows(jobId) ? .success(grant) : .failure(.forbidden(jobId))
        }
    }

    /// Authenticates and checks access to what a subscription names: its job, every job a feed lists, or (a feed
    /// of all jobs) nothing more — such a feed carries only the jobs the grant allows.
    public func authorize(_ token: String?, target: SubscriptionTarget) async -> Result<Grant, AuthFailure> {
        switch target {
        case .job(let jobId):
            return await authorize(token, jobId: jobId)
        case .jobs(.all):
            return await authenticate(token)
        case .jobs(.listed(let ids)):
            switch await authenticate(token) {
            case .failure(let failure): return .failure(failure)
            case .success(let grant):
                if let refused = ids.first(where: { !grant.allows($0) }) { return .failure(.forbidden(refused)) }
                return .success(grant)
            }
        }
    }

    /// The token of a request: `Authorization: Bearer …`, else the `token` query parameter
    /// (browsers cannot set headers on WebSockets, hence the hook's `?token=`).
    public static func token(authorization: String?, query: String?) -> String? {
        if let authorization, authorization.lowercased().hasPrefix("bearer ") {
            return String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        return query
    }

    /// Whether a browser `Origin` may open a WebSocket (no header: not a browser, allowed).
    public func allowsOrigin(_ origin: String?) -> Bool {
        guard !settings.allowedOrigins.isEmpty, let origin else { return true }
        return settings.allowedOrigins.contains(origin)
    }

    /// The `alg` of a compact JWS header, without trusting anything else in it.
    static func headerAlgorithm(_ token: String) -> String? { header(token)?.alg }

    /// The `alg` and `kid` of a compact JWS header.
    static func header(_ token: String) -> (alg: String, kid: String?)? {
        guard let dot = token.firstIndex(of: "."), token[token.index(after: dot)...].contains(".") else { return nil }
        var encoded = String(token[..<dot]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while encoded.count % 4 != 0 { encoded += "=" }
        guard encoded.count <= 4096, let data = Data(base64Encoded: encoded),
            let header = try? JSONParser(limits: .init(maxDepth: 8, maxBytes: 4096)).parse(data)
        else { return nil }
        guard let alg = header["alg"]?.stringValue else { return nil }
        return (alg, header["kid"]?.stringValue)
    }
}

/// Gives every key of a JWKS exactly one algorithm before the keys are loaded. A key without `alg` would
/// otherwise take the algorithm of the first token that names it, and keep it: one token with `PS512` in its
/// header would lock every `RS256` user out. The algorithm is derived from the key type: RSA → RS256,
/// EC P-256/P-384/P-521 → ES256/ES384/ES512, OKP Ed25519 → EdDSA; another is used only when the key says so.
enum JWKSAlgorithms {
    static let supported: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

    /// The JWKS with `alg` set on every key, and each key's algorithm by `kid`.
    static func pin(_ json: String) throws(StartupError) -> (json: String, algorithms: [String: String]) {
        guard let document = try? JSONParser(limits: .init(maxDepth: 16, maxBytes: 1 << 20)).parse(Array(json.utf8)),
            case .array(let keys)? = document["keys"]
        else { throw StartupError("is not a JSON object with a \"keys\" array") }
        var pinned: [String: String] = [:]
        var rewritten: [JSONValue] = []
        for (index, key) in keys.enumerated() {
            guard case .object(var members) = key else { throw StartupError("key \(index) is not an object") }
            let alg: String
            if let given = members["alg"]?.stringValue {
                alg = given
            } else {
                switch (members["kty"]?.stringValue, members["crv"]?.stringValue) {
                case ("RSA", _): alg = "RS256"
                case ("EC", "P-256"): alg = "ES256"
                case ("EC", "P-384"): alg = "ES384"
                case ("EC", "P-521"): alg = "ES512"
                case ("OKP", "Ed25519"): alg = "EdDSA"
                default: throw StartupError("key \(index) has no alg and its type does not imply one; set alg")
                }
                members["alg"] = .string(alg)
            }
            guard supported.contains(alg) else { throw StartupError("key \(index) has alg \(alg.prefix(16)), which is not accepted") }
            if let kid = members["kid"]?.stringValue { pinned[kid] = alg }
            rewritten.append(.object(members))
        }
        guard case .object(var root) = document else { throw StartupError("is not a JSON object") }
        root["keys"] = .array(rewritten)
        return (JSONValue.object(root).serialized(), pinned)
    }
}
