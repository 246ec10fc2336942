import Foundation

/// What the cloud holds that no live host owns, and live hosts whose instance is gone.
public struct ReconcileReport: Sendable, Codable, Equatable {
    public struct Orphan: Sendable, Codable, Equatable {
        public var kind: String  // "instance" or "volume"
        public var id: String
        public var hostID: String?
        public var why: String
    }
    public struct Vanished: Sendable, Codable, Equatable {
        public var host: String
        public var instanceId: String
    }
    public var orphans: [Orphan]
    public var vanished: [Vanished]
    /// Orphans removed (with `--fix`).
    public var removed: [String]
    /// Orphans `--fix` left alone: their host id is unknown to this database, which happens when the
    /// database was restored from a backup older than those hosts. Removed only when asked explicitly.
    public var keptUnknown: [String]
    /// Managed resources of other installations (another database), never looked at further.
    public var otherInstallations: Int

    public init(orphans: [Orphan], vanished: [Vanished], removed: [String], keptUnknown: [String] = [], otherInstallations: Int = 0) {
        self.orphans = orphans
        self.vanished = vanished
        self.removed = removed
        self.keptUnknown = keptUnknown
        self.otherInstallations = otherInstallations
    }
}

/// What `reconcile --fix` may remove.
public struct ReconcileRequest: Sendable, Codable, Equatable {
    /// Also remove orphans whose host id this database has never seen.
    public var includeUnknownHosts: Bool
    public init(includeUnknownHosts: Bool = false) { self.includeUnknownHosts = includeUnknownHosts }
}

/// Compares the cloud's onetouch-managed resources with the hosts in the store.
public struct Reconciler: Sendable {
    let store: Store
    let cloud: any CloudProvider

    public init(store: Store, cloud: any CloudProvider) {
        self.store = store
        self.cloud = cloud
    }

    /// Lists orphans and vanished instances; with `fix`, removes the orphans of hosts this database knows
    /// (and, with `includeUnknownHosts`, the others too).
    public func run(fix: Bool, includeUnknownHosts: Bool = false) async throws -> ReconcileReport {
        let hosts = Dictionary(try store.hosts().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // Only this installation's resources, and untagged ones made before installations were tagged.
        let ours: ([String: String]) -> Bool = { tags in
            tags[ManagedTags.installation].map { $0 == store.installationID } ?? true
        }
        let allInstances = try await cloud.managedInstances()
        let allVolumes = try await cloud.managedVolumes()
        let instances = allInstances.filter { ours($0.tags) }
        let volumes = allVolumes.filter { ours($0.tags) }
        let otherInstallations = allInstances.count - instances.count + allVolumes.count - volumes.count
        var orphans: [ReconcileReport.Orphan] = []
        for instance in instances {
            if let why = orphanReason(tags: instance.tags, id: instance.id, hosts: hosts, recorded: { $0.instanceID }) {
                orphans.append(.init(kind: "instance", id: instance.id, hostID: instance.tags[ManagedTags.hostID], why: why))
            }
        }
        for volume in volumes {
            if let host = volume.tags[ManagedTags.hostID].flatMap({ hosts[$0] }), host.hostState == .destroyed, host.keepVolume {
                continue  // kept on purpose with --keep-volume
            }
            if let why = orphanReason(tags: volume.tags, id: volume.id, hosts: hosts, recorded: { $0.volumeID }) {
                orphans.append(.init(kind: "volume", id: volume.id, hostID: volume.tags[ManagedTags.hostID], why: why))
            }
        }
        let live = Set(instances.map(\.id))
        let vanished = hosts.values.filter { $0.hostState == .ready }.compactMap { host -> ReconcileReport.Vanished? in
            guard let id = host.decodedFacts.instanceID, !live.contains(id) else { return nil }
            return .init(host: host.name, instanceId: id)
        }.sorted { $0.host < $1.host }
        var removed: [String] = []
        let unknown = orphans.filter { orphan in orphan.hostID.map { hosts[$0] == nil } ?? true }.map(\.id)
        if fix {
            let removable = orphans.filter { includeUnknownHosts || !unknown.contains($0.id) }
            for orphan in removable where orphan.kind == "instance" {
                try await cloud.terminate(instanceID: orphan.id)
                removed.append(orphan.id)
            }
            for orphan in removable where orphan.kind == "volume" {
                // A volume still attached to an orphan instance is freed once that instance is gone.
                guard try await cloud.volumes(ids: [orphan.id]).first?.attachedTo == nil else { continue }
                try await cloud.deleteVolume(volumeID: orphan.id)
                removed.append(orphan.id)
            }
        }
        return ReconcileReport(
            orphans: orphans, vanished: vanished, removed: removed, keptUnknown: fix && !includeUnknownHosts ? unknown : [],
            otherInstallations: otherInstallations)
    }

    /// Why a managed resource belongs to no live host, or nil if it does.
    private func orphanReason(
        tags: [String: String], id: String, hosts: [String: HostRecord], recorded: (HostFacts) -> String?
    ) -> String? {
        guard let hostID = tags[ManagedTags.hostID], let host = hosts[hostID] else { return "no host has this id" }
        if host.hostState == .destroyed { return "its host \(host.name) was destroyed" }
        if let generation = tags["onetouch:generation"], generation != String(host.generation) {
            return "left from generation \(generation) of \(host.name) (now \(host.generation))"
        }
        if let mine = recorded(host.decodedFacts), mine != id { return "\(host.name) uses \(mine) instead" }
        return nil
    }
}
