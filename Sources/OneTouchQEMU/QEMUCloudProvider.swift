import Crypto
import Foundation
import Logging
import OneTouchCore
import OneTouchProcess
import Synchronization

/// Local VMs: each host is a QEMU process (daemonized, so it outlives `onetouch serve`) with a
/// copy-on-write overlay on the base image, a NoCloud seed carrying its user-data, user-mode
/// networking with `restrict=on` and relays only to the configured forwards. Data volumes are
/// LUKS-encrypted qcow2 files whose passphrase is sealed with the master key and reaches QEMU only
/// over QMP (or qemu-img's standard input), never argv or a file in clear.
///
/// Ids derive from the idempotency key, so a launch or volume asked for again (after a crash of
/// `serve`) finds its folder and adopts what runs there instead of starting a second one. Removed
/// VMs and volumes leave a tombstone, so a spent key is never used again (as EC2's ClientToken).
public final class QEMUCloudProvider: CloudProvider {
    let settings: QEMUSettings
    /// Seals volume passphrases with the master key; read on first use, so building the provider
    /// writes nothing (`serve` checks its configuration and tokens before the key is made).
    private let sealerSource: @Sendable () throws -> SecretBox
    private let sealerCache = Mutex<SecretBox?>(nil)
    private let logger: Logger
    private let qemuImg: Command
    private let isoTool: Command
    private let qemuSystem: Command

    public convenience init(settings: QEMUSettings, sealer: SecretBox, logger: Logger) {
        self.init(settings: settings, sealer: { sealer }, logger: logger)
    }

    /// `sealer` is asked once, on the first volume operation.
    public init(settings: QEMUSettings, sealer: @escaping @Sendable () throws -> SecretBox, logger: Logger) {
        self.settings = settings
        self.sealerSource = sealer
        self.logger = logger
        self.qemuImg = Command(path: settings.qemuImg)
        self.isoTool = Command(path: settings.isoTool)
        self.qemuSystem = Command(path: settings.qemuSystem)
    }

    /// The guest's address on QEMU's user-mode network (every guest has its own network).
    static let guestAddress = "10.0.2.15"
    static let zone = "local"
    static let tombstone = "removed"
    static let volumeKeyKind = "qemu-volume-passphrase"

    // MARK: Records kept in each folder

    struct InstanceRecord: Codable {
        var id: String
        var hostID: String
        var hostName: String
        var idempotencyKey: String
        var tags: [String: String]
        var createdAt: Date
    }

    struct VolumeRecord: Codable {
        var id: String
        var hostID: String
        var idempotencyKey: String
        var sizeGiB: Int
        var tags: [String: String]
        /// The LUKS passphrase, sealed with the master key.
        var sealedPassphrase: Data
        var attachedTo: String?
        var createdAt: Date
    }

    static func instanceID(forKey key: String) -> String { "i-" + digest(key).prefix(17) }
    static func volumeID(forKey key: String) -> String { "vol-" + digest(key).prefix(17) }

    private static func digest(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    private func folder(_ id: String) -> URL { URL(fileURLWithPath: settings.stateDirectory).appendingPathComponent(id) }
    private func file(_ id: String, _ name: String) -> String { folder(id).appendingPathComponent(name).path }
    private func isRemoved(_ id: String) -> Bool { FileManager.default.fileExists(atPath: file(id, Self.tombstone)) }

    private func read<T: Decodable>(_ type: T.Type, _ id: String, _ name: String) throws -> T? {
        guard let data = FileManager.default.contents(atPath: file(id, name)) else { return nil }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw StepError.permanent("\(file(id, name)) cannot be read (\(error)); the local VM state folder is damaged")
        }
    }

    /// Writes a file with mode 0600, atomically (a crash never leaves half a record).
    private func write(_ data: Data, _ id: String, _ name: String) throws {
        let path = file(id, name)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]),
            rename(temporary, path) == 0
        else {
            throw StepError.permanent("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    private func sealer() throws -> SecretBox {
        if let sealer = sealerCache.withLock({ $0 }) { return sealer }
        let sealer = try sealerSource()
        sealerCache.withLock { $0 = sealer }
        return sealer
    }

    /// The VM's or volume's folder, and the state folder itself, both 0700.
    private func makeFolder(_ id: String) throws {
        try FileManager.default.createDirectory(
            atPath: settings.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createDirectory(at: folder(id), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    private func ids(withPrefix prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: settings.stateDirectory)) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
    }

    // MARK: Instances

    public func launch(_ request: LaunchRequest) async throws -> Instance {
        let id = Self.instanceID(forKey: request.idempotencyKey)
        if isRemoved(id) {
            throw LaunchKeySpent("local VM \(id) launched under key \(request.idempotencyKey) was removed")
        }
        if let pid = runningPID(id) {
            logger.info("Adopted a running VM", metadata: ["host.id": "\(request.hostID)", "instance": "\(id)", "pid": "\(pid)"])
            return try describe(id) ?? Instance(id: id, state: .running)
        }
        try checkImage()
        try makeFolder(id)
        if try read(InstanceRecord.self, id, "instance.json") == nil {
            let record = InstanceRecord(
                id: id, hostID: request.hostID, hostName: request.hostName, idempotencyKey: request.idempotencyKey,
                tags: request.tags, createdAt: Date())
            try write(try JSONEncoder().encode(record), id, "instance.json")
        }
        try await makeSeed(id, request: request)
        if !FileManager.default.fileExists(atPath: file(id, "disk.qcow2")) {
            let temporary = file(id, "disk.qcow2.tmp")
            try? FileManager.default.removeItem(atPath: temporary)
            try await qemuImg.run([
                "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", imageFile("base.qcow2"), temporary,
            ])
            guard rename(temporary, file(id, "disk.qcow2")) == 0 else {
                throw StepError.permanent("cannot create the disk of \(id): \(String(cString: strerror(errno)))")
            }
        }
        try await start(id)
        logger.info("Started a local VM", metadata: ["host.id": "\(request.hostID)", "instance": "\(id)"])
        return try describe(id) ?? Instance(id: id, state: .pending)
    }

    private func imageFile(_ name: String) -> String {
        URL(fileURLWithPath: settings.imageDirectory).appendingPathComponent(name).path
    }

    private func checkImage() throws {
        for name in ["base.qcow2", "vmlinuz", "initrd.img"] where !FileManager.default.fileExists(atPath: imageFile(name)) {
            throw StepError.permanent(
                "the base image has no \(name) in \(settings.imageDirectory)",
                hint: "run scripts/build-image and set provider.image to the folder it prints, then `onetouch resume {host}`")
        }
    }

    /// The NoCloud seed: an ISO 9660 volume labelled `cidata` with user-data and meta-data.
    private func makeSeed(_ id: String, request: LaunchRequest) async throws {
        guard !FileManager.default.fileExists(atPath: file(id, "seed.iso")) else { return }
        let shortName = request.hostName.split(separator: ".").first.map(String.init) ?? request.hostName
        try write(request.userData, id, "user-data")
        try write(Data("instance-id: \(id)\nlocal-hostname: \(shortName)\n".utf8), id, "meta-data")
        let temporary = file(id, "seed.iso.tmp")
        try await isoTool.run([
            "-quiet", "-output", temporary, "-volid", "cidata", "-joliet", "-rock", file(id, "user-data"), file(id, "meta-data"),
        ])
        chmod(temporary, 0o600)
        guard rename(temporary, file(id, "seed.iso")) == 0 else {
            throw StepError.permanent("cannot create the seed of \(id): \(String(cString: strerror(errno)))")
        }
        // The seed carries the user-data; the plain copies are not needed any more.
        try? FileManager.default.removeItem(atPath: file(id, "user-data"))
    }

    /// QEMU's command line for VM `id`. It daemonizes: it runs in a session of its own and survives
    /// a crash or restart of `serve`.
    func arguments(_ id: String) -> [String] {
        let network =
            (["user", "id=net0", "restrict=on"]
            + settings.forwards.map {
                "guestfwd=tcp:\($0.guestAddress):\($0.guestPort)-cmd:\(settings.relay) STDIO TCP:\($0.hostAddress):\($0.hostPort)"
            }).joined(separator: ",")
        return [
            "-name", "onetouch-\(id)", "-machine", "pc", "-accel", settings.accelerator, "-cpu", "max",
            "-m", String(settings.memoryMiB), "-smp", String(settings.cpus), "-nodefaults", "-display", "none",
            "-serial", "file:\(file(id, "serial.log"))", "-monitor", "none",
            "-qmp", "unix:\(file(id, "qmp.sock")),server=on,wait=off", "-pidfile", file(id, "qemu.pid"), "-daemonize",
            "-kernel", imageFile("vmlinuz"), "-initrd", imageFile("initrd.img"),
            "-append", "root=LABEL=vmroot rw console=ttyS0 panic=-1",
            "-drive", "file=\(file(id, "disk.qcow2")),if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root,serial=rootdisk",
            "-drive", "file=\(file(id, "seed.iso")),if=none,id=seed,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=seed,serial=cidata",
            "-netdev", network, "-device", "virtio-net-pci,netdev=net0",
        ]
    }

    private func start(_ id: String) async throws {
        try? FileManager.default.removeItem(atPath: file(id, "qemu.pid"))
        do {
            try await qemuSystem.run(arguments(id), timeout: .seconds(60))
        } catch let failed as Command.Failed {
            throw StepError.permanent("QEMU could not start VM \(id): \(failed.description)", hint: "check provider settings")
        }
    }

    /// The pid of the QEMU running VM `id`, if one does (checked against its command line, so a
    /// reused pid is not mistaken for the VM).
    func runningPID(_ id: String) -> Int32? {
        guard let text = try? String(contentsOfFile: file(id, "qemu.pid"), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
            String(decoding: cmdline, as: UTF8.self).contains("onetouch-\(id)")
        else { return nil }
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z"
        {
            return nil
        }
        return pid
    }

    private func describe(_ id: String) throws -> Instance? {
        guard let record = try read(InstanceRecord.self, id, "instance.json") else { return nil }
        let state: Instance.State
        if isRemoved(id) {
            state = .terminated
        } else if runningPID(id) != nil {
            state = .running
        } else {
            state = FileManager.default.fileExists(atPath: file(id, "qemu.pid")) ? .stopped : .pending
        }
        return Instance(
            id: id, state: state, privateIP: state == .running ? Self.guestAddress : nil, zone: Self.zone, tags: record.tags,
            metadataTokensRequired: true)
    }

    public func instances(ids: [String]) async throws -> [Instance] {
        try ids.filter { $0.hasPrefix("i-") && !$0.contains("/") }.compactMap { try describe($0) }
    }

    public func instances(hostIDs: [String]) async throws -> [Instance] {
        let wanted = Set(hostIDs)
        return try ids(withPrefix: "i-").filter { !isRemoved($0) }.compactMap { try describe($0) }
            .filter { $0.tags[ManagedTags.hostID].map(wanted.contains) == true }
    }

    public func instances(launchKeys: [String]) async throws -> [Instance] {
        try launchKeys.map(Self.instanceID(forKey:)).filter { !isRemoved($0) }.compactMap { try describe($0) }
    }

    public func managedInstances() async throws -> [Instance] {
        try ids(withPrefix: "i-").filter { !isRemoved($0) }.compactMap { try describe($0) }
    }

    public func terminate(instanceID: String) async throws {
        guard instanceID.hasPrefix("i-"), FileManager.default.fileExists(atPath: folder(instanceID).path) else { return }
        if let pid = runningPID(instanceID) {
            // Ask the guest to power off; kill QEMU when it does not within the deadline.
            _ = try? await QMPSession.with(socket: file(instanceID, "qmp.sock"), timeout: .seconds(5)) { session in
                try await session.execute("system_powerdown")
                return true
            }
            if !(await exited(instanceID, within: settings.shutdownDeadline)) {
                kill(pid, SIGTERM)
                if !(await exited(instanceID, within: .seconds(5))) { kill(pid, SIGKILL) }
            }
            logger.info("Stopped a local VM", metadata: ["instance": "\(instanceID)"])
        }
        try write(Data(), instanceID, Self.tombstone)
        for name in ["disk.qcow2", "seed.iso", "user-data", "meta-data", "qmp.sock", "qemu.pid"] {
            try? FileManager.default.removeItem(atPath: file(instanceID, name))
        }
    }

    private func exited(_ id: String, within deadline: Duration) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: deadline)
        while clock.now < end {
            if runningPID(id) == nil { return true }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return runningPID(id) == nil
    }

    // MARK: Volumes

    public func createVolume(_ request: VolumeRequest) async throws -> Volume {
        let id = Self.volumeID(forKey: request.idempotencyKey)
        if !isRemoved(id) {
            try makeFolder(id)
            var record = try read(VolumeRecord.self, id, "volume.json")
            if record == nil {
                let passphrase = Secret(Self.digest(UUID().uuidString + UUID().uuidString))
                let fresh = VolumeRecord(
                    id: id, hostID: request.hostID, idempotencyKey: request.idempotencyKey, sizeGiB: request.sizeGiB,
                    tags: request.tags, sealedPassphrase: try sealer().seal(passphrase, hostID: request.hostID, kind: Self.volumeKeyKind),
                    attachedTo: nil, createdAt: Date())
                try write(try JSONEncoder().encode(fresh), id, "volume.json")
                record = fresh
            }
            if let record, !FileManager.default.fileExists(atPath: file(id, "data.qcow2")) {
                try await makeEncryptedImage(record)
            }
        }
        guard let volume = try describeVolume(id) else { throw StepError.transient("volume \(id) is not recorded yet") }
        return volume
    }

    /// A qcow2 with LUKS encryption. The passphrase goes through qemu-img's standard input. It is a
    /// random 256-bit value, so LUKS' key stretching adds nothing: 100 ms instead of the default 2 s
    /// (paid again at every attach).
    private func makeEncryptedImage(_ record: VolumeRecord) async throws {
        let passphrase = try sealer().open(record.sealedPassphrase, hostID: record.hostID, kind: Self.volumeKeyKind)
        let temporary = file(record.id, "data.qcow2.tmp")
        try? FileManager.default.removeItem(atPath: temporary)
        // qemu-img times PBKDF2 by the thread's CPU clock to pick the iteration count; on a busy machine
        // that measure can come back unusable ("Unable to get accurate CPU usage"), and a second try works.
        for attempt in 1...3 {
            do {
                _ = try await qemuImg.run(
                    [
                        "create", "-q", "--object", "secret,id=sec0,file=/dev/stdin", "-f", "qcow2",
                        "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100", temporary, "\(record.sizeGiB)G",
                    ], input: passphrase.reveal())
                break
            } catch  where attempt < 3 && "\(error)".contains("Unable to get accurate CPU usage") {
                logger.notice("qemu-img could not time the key derivation; trying again", metadata: ["volume": "\(record.id)"])
            }
        }
        chmod(temporary, 0o600)
        guard rename(temporary, file(record.id, "data.qcow2")) == 0 else {
            throw StepError.permanent("cannot create volume \(record.id): \(String(cString: strerror(errno)))")
        }
        logger.info("Created an encrypted volume", metadata: ["host.id": "\(record.hostID)", "volume": "\(record.id)"])
    }

    /// Whether the volume's file really is LUKS-encrypted, as qemu-img reads its header (no key needed).
    private func isEncrypted(_ id: String) async -> Bool {
        guard FileManager.default.fileExists(atPath: file(id, "data.qcow2")),
            let output = try? await qemuImg.run(["info", "-U", "--output=json", file(id, "data.qcow2")], timeout: .seconds(30)),
            let info = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        else { return false }
        let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let encrypt = specific?["encrypt"] as? [String: Any]
        return info["encrypted"] as? Bool == true && encrypt?["format"] as? String == "luks"
    }

    private func describeVolume(_ id: String) throws -> Volume? {
        guard let record = try read(VolumeRecord.self, id, "volume.json") else { return nil }
        let state: Volume.State
        var attachedTo: String?
        if isRemoved(id) {
            state = .deleted
        } else if !FileManager.default.fileExists(atPath: file(id, "data.qcow2")) {
            state = .creating
        } else if let instance = record.attachedTo, runningPID(instance) != nil {
            state = .inUse
            attachedTo = instance
        } else {
            state = .available
        }
        return Volume(
            id: id, zone: Self.zone, sizeGiB: record.sizeGiB, state: state, encrypted: state != .creating && state != .deleted,
            keyID: "master-key", attachedTo: attachedTo, tags: record.tags)
    }

    /// Volumes as they are, with `encrypted` read from the file's own header.
    private func volumesChecked(_ ids: [String]) async throws -> [Volume] {
        var volumes: [Volume] = []
        for id in ids {
            guard var volume = try describeVolume(id) else { continue }
            if volume.state != .deleted && volume.state != .creating { volume.encrypted = await isEncrypted(id) }
            volumes.append(volume)
        }
        return volumes
    }

    public func volumes(ids: [String]) async throws -> [Volume] {
        try await volumesChecked(ids.filter { $0.hasPrefix("vol-") && !$0.contains("/") })
    }

    public func volumes(hostIDs: [String]) async throws -> [Volume] {
        let wanted = Set(hostIDs)
        return try await volumesChecked(ids(withPrefix: "vol-").filter { !isRemoved($0) })
            .filter { $0.tags[ManagedTags.hostID].map(wanted.contains) == true }
    }

    public func managedVolumes() async throws -> [Volume] {
        try await volumesChecked(ids(withPrefix: "vol-").filter { !isRemoved($0) })
    }

    /// Hot-plugs the volume into the running VM over QMP: the passphrase as a QMP secret, the
    /// encrypted qcow2 as a block node, and a virtio disk whose serial is the volume id (the guest
    /// finds it as /dev/disk/by-id/virtio-vol-…). Parts already there are kept.
    public func attachVolume(volumeID: String, instanceID: String) async throws {
        guard let record = try read(VolumeRecord.self, volumeID, "volume.json"), !isRemoved(volumeID) else {
            throw StepError.permanent("volume \(volumeID) does not exist")
        }
        if let other = record.attachedTo, other != instanceID, runningPID(other) != nil {
            throw StepError.permanent("volume \(volumeID) is attached to \(other)")
        }
        guard runningPID(instanceID) != nil else {
            throw StepError.transient("local VM \(instanceID) is not running yet")
        }
        let passphrase = try sealer().open(record.sealedPassphrase, hostID: record.hostID, kind: Self.volumeKeyKind).reveal()
        let path = file(volumeID, "data.qcow2")
        do {
            try await QMPSession.with(socket: file(instanceID, "qmp.sock")) { session in
                let secret = "sec-\(volumeID)"
                try await Self.idempotent {
                    try await session.execute("object-add", ["qom-type": "secret", "id": secret, "data": passphrase])
                }
                try await Self.idempotent {
                    try await session.execute(
                        "blockdev-add", ["node-name": "\(volumeID)-file", "driver": "file", "filename": path])
                }
                try await Self.idempotent {
                    try await session.execute(
                        "blockdev-add",
                        [
                            "node-name": volumeID, "driver": "qcow2", "file": "\(volumeID)-file",
                            "encrypt": ["format": "luks", "key-secret": secret],
                        ])
                }
                try await Self.idempotent {
                    try await session.execute(
                        "device_add",
                        ["driver": "virtio-blk-pci", "drive": volumeID, "id": volumeID, "serial": String(volumeID.prefix(20))])
                }
            }
        } catch let error as QMPError {
            throw StepError.transient("attaching \(volumeID) to \(instanceID): \(error.description)")
        } catch let error as StepError {
            throw error
        } catch {
            throw StepError.transient("cannot reach QEMU of \(instanceID) yet: \(error)")
        }
        var attached = record
        attached.attachedTo = instanceID
        try write(try JSONEncoder().encode(attached), volumeID, "volume.json")
        logger.info("Attached an encrypted volume", metadata: ["volume": "\(volumeID)", "instance": "\(instanceID)"])
    }

    /// Runs a QMP command that may have been done before (a retried attach): "already exists" is success.
    private static func idempotent(_ body: () async throws -> Void) async throws {
        do { try await body() } catch let error as QMPError {
            let text = error.message.lowercased()
            guard text.contains("duplicate") || text.contains("already") || text.contains("in use") else { throw error }
        }
    }

    public func deleteVolume(volumeID: String) async throws {
        guard volumeID.hasPrefix("vol-"), let record = try read(VolumeRecord.self, volumeID, "volume.json") else { return }
        if !isRemoved(volumeID), let instance = record.attachedTo, runningPID(instance) != nil {
            throw StepError.transient("volume \(volumeID) is still attached to the running VM \(instance)")
        }
        try write(Data(), volumeID, Self.tombstone)
        try? FileManager.default.removeItem(atPath: file(volumeID, "data.qcow2"))
        logger.info("Deleted a volume", metadata: ["volume": "\(volumeID)"])
    }
}
