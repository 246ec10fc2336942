import Crypto
import Foundation
import OneTouchCore

/// AWS Signature Version 4 (header-based) signer.
///
/// Follows docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
/// and reproduces the aws-c-auth `v4` test suite. Every header handed in (except a few
/// hop-by-hop / tracing headers) is signed, so an EC2 Query POST carrying `Content-Type` and
/// `Host` signs `content-type;host;x-amz-date` (plus `x-amz-security-token` for session
/// credentials), exactly like botocore.
public struct SigV4Signer: Sendable {
    /// Behaviour switches that only matter for services other than EC2 (and for the test suite).
    public struct Options: Sendable, Equatable {
        /// Remove `.`/`..` segments and empty segments from the path before encoding it.
        public var normalizePath: Bool
        /// Add and sign `x-amz-content-sha256` (aws-c-auth `sign_body`).
        public var addContentSHA256Header: Bool
        /// Sign `x-amz-security-token`. When false the token header is added *after* signing
        /// (IoT style; aws-c-auth `omit_session_token`). EC2 requires true.
        public var signSessionToken: Bool

        public init(normalizePath: Bool = true, addContentSHA256Header: Bool = false, signSessionToken: Bool = true) {
            self.normalizePath = normalizePath
            self.addContentSHA256Header = addContentSHA256Header
            self.signSessionToken = signSessionToken
        }
    }

    /// What gets signed. `path` is the path as it appears on the wire (it is percent-encoded once
    /// more for the canonical request, as SigV4 requires for every service except S3); `query`
    /// holds *decoded* names and values.
    public struct Input: Sendable {
        public var method: String
        public var path: String
        public var query: [(String, String)]
        public var headers: [(String, String)]
        public var body: Data

        public init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], body: Data = Data()) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }
    }

    /// The intermediate artefacts (for tests and debugging) and the headers to send.
    public struct Output: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var signedHeaders: String
        public var authorization: String
        /// The input headers plus `X-Amz-Date`, the session token (if any), optionally
        /// `x-amz-content-sha256`, and `Authorization`.
        public var headers: [(String, String)]
    }

    public static let algorithm = "AWS4-HMAC-SHA256"

    /// Headers never signed: they are rewritten by proxies or added by the HTTP stack.
    static let unsignedHeaders: Set<String> = [
        "authorization", "user-agent", "x-amzn-trace-id", "expect", "connection", "transfer-encoding",
    ]

    public let region: String
    public let service: String
    public let options: Options

    public init(region: String, service: String, options: Options = Options()) {
        self.region = region
        self.service = service
        self.options = options
    }

    // MARK: - Signing

    public func sign(_ input: Input, credentials: AWSCredentials, date: Date) -> Output {
        let stamp = AWSTimestamp(date)
        let payloadHash = Self.hexSHA256(input.body)

        // Headers we (re)compute are dropped from the input so re-signing a request is safe.
        var headers = input.headers.filter {
            !["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]
                .contains($0.0.lowercased())
        }
        headers.append(("X-Amz-Date", stamp.long))
        if let token = credentials.sessionToken, options.signSessionToken {
            headers.append(("X-Amz-Security-Token", token))
        }
        if options.addContentSHA256Header {
            headers.append(("x-amz-content-sha256", payloadHash))
        }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let canonicalRequest = [
            input.method.uppercased(),
            canonicalURI(input.path),
            Self.canonicalQuery(input.query),
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")

        let scope = "\(stamp.short)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            Self.algorithm, stamp.long, scope, Self.hexSHA256(Data(canonicalRequest.utf8)),
        ].joined(separator: "\n")

        let key = Self.signingKey(
            secretAccessKey: credentials.secretAccessKey, dateStamp: stamp.short, region: region, service: service)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        let authorization =
            "\(Self.algorithm) Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"

        headers.append(("Authorization", authorization))
        if let token = credentials.sessionToken, !options.signSessionToken {
            headers.append(("X-Amz-Security-Token", token))
        }
        return Output(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature,
            signedHeaders: signedHeaders, authorization: authorization, headers: headers)
    }

    /// Signs a transport request: adds `Host` (from the URL) if missing, then the SigV4 headers.
    public func sign(_ request: HTTPRequestData, credentials: AWSCredentials, date: Date) -> HTTPRequestData {
        var headers = request.headers
        if request.header("host") == nil, let host = Self.hostHeader(for: request.url) {
            headers.insert(("Host", host), at: 0)
        }
        let components = URLComponents(url: request.url, resolvingAgainstBaseURL: false)
        let path = components?.percentEncodedPath ?? "/"
        let query = (components?.percentEncodedQueryItems ?? []).map {
            (PercentEncoding.decode($0.name), PercentEncoding.decode($0.value ?? ""))
        }
        let input = Input(method: request.method, path: path, query: query, headers: headers, body: request.body)
        var signed = request
        signed.headers = sign(input, credentials: credentials, date: date).headers
        return signed
    }

    /// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
    public static func signingKey(secretAccessKey: String, dateStamp: String, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8))
        for part in [dateStamp, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// `host` or `host:port` when the port is not the scheme's default.
    static func hostHeader(for url: URL) -> String? {
        guard let host = url.host(percentEncoded: false), !host.isEmpty else { return nil }
        let bracketed = host.contains(":") ? "[\(host)]" : host  // IPv6 literal
        guard let port = url.port else { return bracketed }
        let scheme = url.scheme?.lowercased()
        if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) { return bracketed }
        return "\(bracketed):\(port)"
    }

    // MARK: - Canonical pieces

    func canonicalURI(_ path: String) -> String {
        let raw = path.isEmpty ? "/" : path
        return PercentEncoding.encode(options.normalizePath ? Self.normalize(raw) : raw, keepSlash: true)
    }

    /// Removes empty, `.` and `..` segments; keeps a trailing slash.
    static func normalize(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        let trailingSlash = path.hasSuffix("/") && !segments.isEmpty
        return "/" + segments.joined(separator: "/") + (trailingSlash ? "/" : "")
    }

    static func canonicalQuery(_ query: [(String, String)]) -> String {
        query
            .map { (PercentEncoding.encode($0.0), PercentEncoding.encode($0.1)) }
            .sorted { lhs, rhs in
                lhs.0 == rhs.0
                    ? lhs.1.utf8.lexicographicallyPrecedes(rhs.1.utf8)
                    : lhs.0.utf8.lexicographicallyPrecedes(rhs.0.utf8)
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Lower-cased names, values trimmed with inner whitespace runs collapsed, duplicates joined
    /// with `,` in their original order, sorted by name. Returns the block (each line ending in
    /// `\n`) and the `;`-joined signed header list.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (block: String, signed: String) {
        var values: [String: [String]] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            guard !unsignedHeaders.contains(lower) else { continue }
            values[lower, default: []].append(collapseWhitespace(value))
        }
        let names = values.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let block = names.map { "\($0):\(values[$0, default: []].joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    static func collapseWhitespace(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
            .joined(separator: " ")
    }

    // MARK: - Hex / hashing

    static func hexSHA256(_ data: Data) -> String {
        hex(SHA256.hash(data: data))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The two timestamp spellings SigV4 uses, in UTC: `20150830T123600Z` and `20150830`.
struct AWSTimestamp: Sendable {
    let long: String
    let short: String

    init(_ date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        short = pad(c.year, 4) + pad(c.month, 2) + pad(c.day, 2)
        long = short + "T" + pad(c.hour, 2) + pad(c.minute, 2) + pad(c.second, 2) + "Z"
    }
}
