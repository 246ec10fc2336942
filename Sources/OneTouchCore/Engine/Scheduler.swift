import Foundation

/// When each unfinished host is due, which hosts are being worked on, and a wake-up signal.
///
/// Of the hosts that are due, those furthest along go first (`priority`): when every slot is busy
/// (launches waiting for EC2's RunInstances bucket, say), a host that has booted must not wait behind
/// hundreds of hosts that have not been launched yet.
actor Scheduler {
    private struct Entry {
        var date: Date
        var priority: Int
    }
    private var due: [String: Entry] = [:]
    private var inFlight: Set<String> = []
    private var signalled = false
    private var waiter: CheckedContinuation<Void, Never>?

    func schedule(_ id: String, at date: Date, priority: Int = 0) {
        if let current = due[id], current.date <= date {
            due[id]?.priority = max(current.priority, priority)
            return
        }
        due[id] = Entry(date: date, priority: max(priority, due[id]?.priority ?? priority))
        signal()
    }

    /// Takes up to `limit` hosts due at `now`, furthest along first, then earliest, and marks them in
    /// flight.
    func takeDue(now: Date, limit: Int) -> [String] {
        guard limit > 0 else { return [] }
        var ready = due.filter { $0.value.date <= now && !inFlight.contains($0.key) }.map { ($0.key, $0.value) }
        ready.sort { ($0.1.priority, $1.1.date) > ($1.1.priority, $0.1.date) }
        let taken = ready.prefix(limit).map(\.0)
        for id in taken {
            due[id] = nil
            inFlight.insert(id)
        }
        return taken
    }

    func finished(_ id: String) {
        inFlight.remove(id)
        signal()
    }

    var inFlightCount: Int { inFlight.count }

    /// Hosts whose time has come and that wait for a free slot, and hosts being worked on.
    func depth(now: Date) -> (due: Int, inFlight: Int) {
        (due.count { $0.value.date <= now && !inFlight.contains($0.key) }, inFlight.count)
    }

    func nextDue() -> Date? {
        due.filter { !inFlight.contains($0.key) }.values.map(\.date).min()
    }

    private func signal() {
        if let waiter {
            self.waiter = nil
            waiter.resume()
        } else {
            signalled = true
        }
    }

    /// Suspends until something changed (a host was scheduled or finished) or the task is cancelled.
    func waitForChange() async {
        if signalled {
            signalled = false
            return
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled || signalled {
                    signalled = false
                    continuation.resume()
                } else {
                    waiter = continuation
                }
            }
        } onCancel: {
            Task { await self.cancelWait() }
        }
    }

    private func cancelWait() {
        waiter?.resume()
        waiter = nil
    }
}
