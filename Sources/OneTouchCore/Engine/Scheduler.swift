import Foundation

/// When each unfinished host is due, which hosts are being worked on, and a wake-up signal.
actor Scheduler {
    private var due: [String: Date] = [:]
    private var inFlight: Set<String> = []
    private var signalled = false
    private var waiter: CheckedContinuation<Void, Never>?

    func schedule(_ id: String, at date: Date) {
        if let current = due[id], current <= date { return }
        due[id] = date
        signal()
    }

    func unschedule(_ id: String) { due[id] = nil }

    /// Takes up to `limit` hosts due at `now`, earliest first, and marks them in flight.
    func takeDue(now: Date, limit: Int) -> [String] {
        guard limit > 0 else { return [] }
        var ready = due.filter { $0.value <= now && !inFlight.contains($0.key) }.map { ($0.key, $0.value) }
        ready.sort { $0.1 < $1.1 }
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
    var isIdle: Bool { inFlight.isEmpty }

    func nextDue() -> Date? {
        due.filter { !inFlight.contains($0.key) }.values.min()
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
