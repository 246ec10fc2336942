import Foundation

/// Coalesces the describe calls of many hosts into one call per short window: with 100 hosts
/// polling their instances, the cloud sees one DescribeInstances, not 100.
public struct BatchingCloud: CloudProvider {
    let base: any CloudProvider
    let instanceBatches: Coalescer<Instance>
    let volumeBatches: Coalescer<Volume>

    /// `window`: how long the first caller waits for others to join; `maxIDs`: ids per call (EC2
    /// accepts up to 200 values per filter).
    public init(_ base: any CloudProvider, window: Duration = .milliseconds(50), maxIDs: Int = 100) {
        self.base = base
        instanceBatches = Coalescer(window: window, maxIDs: maxIDs, id: \.id) { try await base.instances(ids: $0) }
        volumeBatches = Coalescer(window: window, maxIDs: maxIDs, id: \.id) { try await base.volumes(ids: $0) }
    }

    public func instances(ids: [String]) async throws -> [Instance] { try await instanceBatches.fetch(ids) }
    public func volumes(ids: [String]) async throws -> [Volume] { try await volumeBatches.fetch(ids) }

    public func launch(_ request: LaunchRequest) async throws -> Instance { try await base.launch(request) }
    public func instances(hostIDs: [String]) async throws -> [Instance] { try await base.instances(hostIDs: hostIDs) }
    public func instances(launchKeys: [String]) async throws -> [Instance] { try await base.instances(launchKeys: launchKeys) }
    public func createVolume(_ request: VolumeRequest) async throws -> Volume { try await base.createVolume(request) }
    public func volumes(hostIDs: [String]) async throws -> [Volume] { try await base.volumes(hostIDs: hostIDs) }
    public func managedInstances() async throws -> [Instance] { try await base.managedInstances() }
    public func managedVolumes() async throws -> [Volume] { try await base.managedVolumes() }
    public var attachmentDevice: String? { base.attachmentDevice }
    public func declaration(instanceType: String, tags: [String: String]) -> CloudDeclaration {
        base.declaration(instanceType: instanceType, tags: tags)
    }

    public func attachVolume(volumeID: String, instanceID: String) async throws {
        try await base.attachVolume(volumeID: volumeID, instanceID: instanceID)
    }
    public func terminate(instanceID: String) async throws { try await base.terminate(instanceID: instanceID) }
    public func deleteVolume(volumeID: String) async throws { try await base.deleteVolume(volumeID: volumeID) }
}

/// Collects id look-ups for `window`, then answers them all with calls of at most `maxIDs` ids.
actor Coalescer<Item: Sendable> {
    typealias Fetch = @Sendable ([String]) async throws -> [Item]
    private let window: Duration
    private let maxIDs: Int
    private let id: @Sendable (Item) -> String
    private let fetchBatch: Fetch
    private var waiters: [(ids: [String], continuation: CheckedContinuation<[Item], any Error>)] = []
    private var flushScheduled = false

    init(window: Duration, maxIDs: Int, id: @escaping @Sendable (Item) -> String, fetch: @escaping Fetch) {
        self.window = window
        self.maxIDs = max(1, maxIDs)
        self.id = id
        self.fetchBatch = fetch
    }

    func fetch(_ ids: [String]) async throws -> [Item] {
        guard !ids.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            waiters.append((ids, continuation))
            if !flushScheduled {
                flushScheduled = true
                let window = self.window
                Task {
                    try? await Task.sleep(for: window)
                    await self.flush()
                }
            }
        }
    }

    private func flush() async {
        let batch = waiters
        waiters = []
        flushScheduled = false
        var seen = Set<String>()
        let all = batch.flatMap(\.ids).filter { seen.insert($0).inserted }
        do {
            var found: [String: Item] = [:]
            for start in stride(from: 0, to: all.count, by: maxIDs) {
                for item in try await fetchBatch(Array(all[start..<min(start + maxIDs, all.count)])) { found[id(item)] = item }
            }
            for waiter in batch { waiter.continuation.resume(returning: waiter.ids.compactMap { found[$0] }) }
        } catch {
            for waiter in batch { waiter.continuation.resume(throwing: error) }
        }
    }
}
