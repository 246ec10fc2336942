import Foundation
import OneTouchCore
import OneTouchEC2
import Synchronization

/// A transport that records every request and answers with a scripted handler.
final class FakeTransport: HTTPTransport {
    typealias Handler = @Sendable (HTTPRequestData) throws -> HTTPResponseData

    private let handler: Handler
    private let recorded = Mutex<[HTTPRequestData]>([])

    init(handler: @escaping Handler) {
        self.handler = handler
    }

    /// Always answers `status` with `xml`.
    convenience init(status: Int = 200, xml: String) {
        self.init { _ in HTTPResponseData(status: status, body: Data(xml.utf8)) }
    }

    var requests: [HTTPRequestData] { recorded.withLock { $0 } }

    func send(_ request: HTTPRequestData, timeout: Duration) async throws -> HTTPResponseData {
        recorded.withLock { $0.append(request) }
        return try handler(request)
    }
}

extension HTTPRequestData {
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A clock that only moves when told to; `sleep(until:)` jumps straight to the deadline
/// (never backwards) and records it, so rate-limiter tests need no real waiting.
final class ManualClock: MonotonicClock {
    private struct State {
        var now: Duration = .zero
        var sleeps: [Duration] = []
    }

    private let state = Mutex(State())

    func now() -> Duration { state.withLock { $0.now } }

    var sleeps: [Duration] { state.withLock { $0.sleeps } }

    func advance(by duration: Duration) {
        state.withLock { $0.now += duration }
    }

    func sleep(until deadline: Duration) async throws {
        try Task.checkCancellation()
        state.withLock {
            $0.sleeps.append(deadline)
            $0.now = max($0.now, deadline)
        }
    }
}

/// A boolean switch shared with a fake's handler.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// A wall clock for credential expiry tests.
final class ManualDate: Sendable {
    private let current: Mutex<Date>

    init(_ date: Date) { current = Mutex(date) }

    var now: Date { current.withLock { $0 } }

    func advance(seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }
}

/// A temporary directory removed at deinit.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "onetouch-ec2-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func write(_ name: String, _ contents: String) throws -> String {
        let file = path + "/" + name
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

let exampleCredentials = AWSCredentials(
    accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

/// 2015-08-30T12:36:00Z, the timestamp of the AWS SigV4 test suite.
let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)
