import Foundation
import NIOCore
import NIOPosix

/// An error QEMU answered a QMP command with (`{"error": {"class", "desc"}}`), or a broken conversation.
struct QMPError: Error, CustomStringConvertible {
    var errorClass: String
    var message: String
    var description: String { "QEMU refused: \(message) (\(errorClass))" }

    static func closed(_ socket: String) -> QMPError {
        QMPError(errorClass: "Closed", message: "the QMP socket \(socket) closed before QEMU answered")
    }
}

/// One conversation over a VM's QMP socket. QEMU serves one QMP client at a time, so each operation
/// opens its own conversation, negotiates capabilities and closes it again.
final class QMPSession {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private let socket: String
    private var pending: [UInt8] = []

    private init(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        socket: String
    ) {
        self.inbound = inbound
        self.outbound = outbound
        self.socket = socket
    }

    /// Connects to `socket`, negotiates capabilities, runs `body` and closes the connection; the
    /// whole conversation is bounded by `timeout`.
    static func with<T: Sendable>(
        socket: String, timeout: Duration = .seconds(30), _ body: @escaping @Sendable (QMPSession) async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(unixDomainSocketPath: socket) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                return try await channel.executeThenClose { inbound, outbound in
                    let session = QMPSession(inbound: inbound.makeAsyncIterator(), outbound: outbound, socket: socket)
                    _ = try await session.readMessage()  // the greeting
                    _ = try await session.execute("qmp_capabilities")
                    return try await body(session)
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw QMPError(errorClass: "Timeout", message: "QEMU did not answer on \(socket) within \(timeout)")
            }
            defer { group.cancelAll() }
            guard let result = try await group.next() else { throw QMPError.closed(socket) }
            return result
        }
    }

    /// Runs one command and returns its `return` value; events that arrive meanwhile are skipped.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any]? = nil) async throws -> Any {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        var bytes = [UInt8](try JSONSerialization.data(withJSONObject: message))
        bytes.append(UInt8(ascii: "\n"))
        try await outbound.write(ByteBuffer(bytes: bytes))
        while true {
            let reply = try await readMessage()
            if reply["event"] != nil { continue }
            if let error = reply["error"] as? [String: Any] {
                throw QMPError(errorClass: error["class"] as? String ?? "GenericError", message: error["desc"] as? String ?? "")
            }
            if let value = reply["return"] { return value }
        }
    }

    private func readMessage() async throws -> [String: Any] {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.allSatisfy({ $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: " ") }) { continue }
                guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw QMPError(errorClass: "Protocol", message: "QEMU sent something that is not a JSON object on \(socket)")
                }
                return object
            }
            guard var buffer = try await inbound.next() else { throw QMPError.closed(socket) }
            pending += buffer.readBytes(length: buffer.readableBytes) ?? []
        }
    }
}
