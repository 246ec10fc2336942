import Foundation
import OneTouchEC2
import Testing

/// The aws-c-auth SigV4 test suite (`<case>/context.json`, `request.txt`,
/// `header-canonical-request.txt`, `header-string-to-sign.txt`, `header-signature.txt`).
/// Location: `ONETOUCH_SIGV4_VECTORS`, else `../shared/vectors/aws-sigv4` beside the repository.
///
/// Applicability: every case's *header* variant is checked — `normalize: false` (path kept as
/// is), `sign_body: true` (`x-amz-content-sha256` added and signed) and `omit_session_token: true`
/// (token added after signing) map onto ``SigV4Signer/Options``. Not checked:
/// * the `query-*` files of every case: presigned-URL signing, which a Query API POST client
///   never does;
/// * `v4a/` (SigV4a, ECDSA multi-region signing): not used by EC2 (absent from this copy anyway).
enum SigV4Vectors {
    static let directory =
        ProcessInfo.processInfo.environment["ONETOUCH_SIGV4_VECTORS"]
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/vectors/aws-sigv4")
        .standardizedFileURL.path

    /// Case directories that should be skipped, with the reason. Empty: every header case applies.
    static let skipped: [String: String] = [:]

    static var available: Bool {
        FileManager.default.fileExists(atPath: directory + "/get-vanilla/request.txt")
    }

    static var caseNames: [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.filter {
            FileManager.default.fileExists(atPath: "\(directory)/\($0)/request.txt") && skipped[$0] == nil
        }.sorted()
    }
}

/// `context.json`, decoded with `.convertFromSnakeCase`.
struct VectorContext: Decodable {
    struct Credentials: Decodable {
        var accessKeyId: String
        var secretAccessKey: String
        var token: String?
    }

    var credentials: Credentials
    var region: String
    var service: String
    var timestamp: String
    var normalize: Bool
    var signBody: Bool
    var omitSessionToken: Bool?

    static func load(_ data: Data) throws -> VectorContext {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(VectorContext.self, from: data)
    }
}

/// Parses `request.txt`: `METHOD <path[?query]> HTTP/1.1`, header lines (a line starting with
/// whitespace continues the previous value), a blank line, then the body.
func parseVectorRequest(_ text: String) throws -> SigV4Signer.Input {
    var lines = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n")
    let requestLine = lines.removeFirst()
    guard let firstSpace = requestLine.firstIndex(of: " "), let lastSpace = requestLine.lastIndex(of: " ") else {
        throw VectorError.badRequestLine(requestLine)
    }
    let method = String(requestLine[..<firstSpace])
    let target = String(requestLine[requestLine.index(after: firstSpace)..<lastSpace])

    var headers: [(String, String)] = []
    while let line = lines.first, !line.isEmpty {
        lines.removeFirst()
        if line.first == " " || line.first == "\t", !headers.isEmpty {
            headers[headers.count - 1].1 += "\n" + line
        } else if let colon = line.firstIndex(of: ":") {
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
    }
    if !lines.isEmpty { lines.removeFirst() }  // the blank separator line
    let body = Data(lines.joined(separator: "\n").utf8)

    let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    let query: [(String, String)] =
        parts.count > 1
        ? parts[1].split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in s.removingPercentEncoding ?? String(s) }
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        } : []
    return SigV4Signer.Input(method: method, path: String(parts[0]), query: query, headers: headers, body: body)
}

enum VectorError: Error {
    case badRequestLine(String)
    case badTimestamp(String)
}

@Suite("SigV4 test-suite vectors")
struct SigV4VectorTests {
    static func read(_ caseName: String, _ file: String) throws -> String {
        try String(contentsOfFile: "\(SigV4Vectors.directory)/\(caseName)/\(file)", encoding: .utf8)
    }

    @Test(
        "Header signing reproduces canonical request, string to sign and signature",
        .enabled(if: SigV4Vectors.available, "SigV4 vectors not found"),
        arguments: SigV4Vectors.caseNames)
    func headerSigningMatchesVector(caseName: String) throws {
        let context = try VectorContext.load(Data(try Self.read(caseName, "context.json").utf8))
        guard let date = try? Date.ISO8601FormatStyle().parse(context.timestamp) else {
            throw VectorError.badTimestamp(context.timestamp)
        }
        let credentials = AWSCredentials(
            accessKeyId: context.credentials.accessKeyId, secretAccessKey: context.credentials.secretAccessKey,
            sessionToken: context.credentials.token)
        let signer = SigV4Signer(
            region: context.region, service: context.service,
            options: .init(
                normalizePath: context.normalize, addContentSHA256Header: context.signBody,
                signSessionToken: !(context.omitSessionToken ?? false)))

        let output = signer.sign(try parseVectorRequest(try Self.read(caseName, "request.txt")), credentials: credentials, date: date)

        #expect(output.canonicalRequest == (try Self.read(caseName, "header-canonical-request.txt")))
        #expect(output.stringToSign == (try Self.read(caseName, "header-string-to-sign.txt")))
        #expect(output.signature == (try Self.read(caseName, "header-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
        let signedRequest = try Self.read(caseName, "header-signed-request.txt")
        #expect(signedRequest.contains("Authorization:\(output.authorization)\n"))
    }

    @Test(.enabled(if: SigV4Vectors.available, "SigV4 vectors not found"))
    func everyHeaderCaseInTheSuiteIsCovered() {
        #expect(SigV4Vectors.caseNames.count + SigV4Vectors.skipped.count >= 38)
    }
}
