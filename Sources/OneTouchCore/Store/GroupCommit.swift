import Foundation
import GRDB
import Synchronization

/// Group commit: writes that arrive while a commit is being synced to disk share the next commit.
///
/// With `synchronous=FULL` every commit waits for `fdatasync`. Hosts in flight each commit after
/// every step; one transaction (one sync) for all the writes that queued up meanwhile costs a
/// fraction of one each. A caller still resumes only once its write is durable, and each write runs
/// in its own savepoint, so one that throws is rolled back alone and the others commit.
final class GroupCommit: Sendable {
    private struct Job: Sendable {
        /// Runs the write in the open transaction; returns how to tell its caller once the
        /// transaction has committed (nil) or failed (the error).
        let run: @Sendable (Database) -> @Sendable ((any Error)?) -> Void
        /// Tells the caller its write never ran.
        let fail: @Sendable (any Error) -> Void
    }

    private struct Queue {
        var jobs: [Job] = []
        var draining = false
    }

    private let writer: any DatabaseWriter
    private let queue = Mutex(Queue())
    private let committed = Mutex((commits: 0, writes: 0))
    private let telemetry: Telemetry

    init(writer: any DatabaseWriter, telemetry: Telemetry) {
        self.writer = writer
        self.telemetry = telemetry
    }

    /// Transactions committed that changed something (a transaction that changed nothing writes
    /// nothing to the log: not a commit that costs).
    var commits: Int { committed.withLock { $0.commits } }

    /// Writes that changed something, each now part of some commit.
    var writes: Int { committed.withLock { $0.writes } }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(
                run: { db in
                    var outcome: Result<T, any Error> = .failure(CancellationError())  // set below on every path
                    do {
                        try db.inSavepoint {
                            outcome = .success(try body(db))
                            return .commit
                        }
                    } catch {
                        outcome = .failure(error)
                    }
                    let result = outcome
                    return { failure in continuation.resume(with: failure.map { .failure($0) } ?? result) }
                },
                fail: { continuation.resume(throwing: $0) })
            let startDrain = queue.withLock { queue in
                queue.jobs.append(job)
                defer { queue.draining = true }
                return !queue.draining
            }
            if startDrain { writer.asyncWriteWithoutTransaction { db in self.drain(db) } }
        }
    }

    /// Commits what is queued, batch after batch, until nothing is.
    private func drain(_ db: Database) {
        while true {
            let jobs = queue.withLock { queue in
                let jobs = queue.jobs
                queue.jobs = []
                if jobs.isEmpty { queue.draining = false }
                return jobs
            }
            if jobs.isEmpty { return }
            var deliveries: [@Sendable ((any Error)?) -> Void] = []
            deliveries.reserveCapacity(jobs.count)
            var writes = 0
            var failure: (any Error)?
            let started = ContinuousClock.now
            do {
                try db.inTransaction(.immediate) {
                    for job in jobs {
                        let before = db.totalChangesCount
                        deliveries.append(job.run(db))
                        if db.totalChangesCount != before { writes += 1 }
                        // Some errors (disk full, I/O) make SQLite roll the whole transaction back:
                        // later writes must not run outside it, one autocommit at a time.
                        guard db.isInsideTransaction else { throw TransactionRolledBack() }
                    }
                    return .commit
                }
                if writes > 0 { committed.withLock { $0 = ($0.commits + 1, $0.writes + writes) } }
            } catch {
                failure = error
            }
            // Recorded before the callers resume: whoever reads the metrics after a write sees its commit.
            telemetry.committed(seconds: (ContinuousClock.now - started).seconds)
            for deliver in deliveries { deliver(failure) }
            // Writes the transaction never reached (BEGIN failed, or it was rolled back) fail with it.
            if let failure {
                for job in jobs.dropFirst(deliveries.count) { job.fail(failure) }
            }
        }
    }
}

struct TransactionRolledBack: Error, CustomStringConvertible {
    var description: String { "SQLite rolled the transaction back after an error; nothing in it was saved" }
}
