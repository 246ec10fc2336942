import Crypto
import Foundation
import Logging
import OneTouchCore
import OneTouchProcess
import Testing

@testable import OneTouchQEMU

/// The provider's file side against the real qemu-img and genisoimage (scripts/install-vm-deps):
/// volumes, keys and tombstones. Booting real guests is covered end to end in testbed/e2e/test_vm.py.
@Suite struct QEMUCloudProviderTests {
    let folder: URL
    let provider: QEMUCloudProvider
    let sealer = SecretBox(masterKey: SymmetricKey(size: .bits256))

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("onetouch-qemu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let settings = QEMUSettings(
            imageDirectory: folder.appendingPathComponent("image").path, stateDirectory: folder.appendingPathComponent("vms").path,
            forwards: [
                .init(guestAddress: "10.0.2.100", guestPort: 8780, hostAddress: "127.0.0.1", hostPort: 40123),
                .init(guestAddress: "10.0.2.101", guestPort: 88, hostAddress: "127.0.0.1", hostPort: 40124),
            ])
        provider = QEMUCloudProvider(settings: settings, sealer: sealer, logger: Logger(label: "test"))
    }

    func request(_ key: String) -> VolumeRequest {
        VolumeRequest(
            hostID: "h-1", zone: "local", sizeGiB: 1, idempotencyKey: key,
            tags: [ManagedTags.hostID: "h-1", ManagedTags.managed: "true", ManagedTags.volumeRole: ManagedTags.dataVolume])
    }

    @Test func aNewVolumeIsALUKSEncryptedQcow2WhoseHeaderSaysSo() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let volume = try await provider.createVolume(request("h-1-attach-volume-g1"))
        #expect(volume.id.hasPrefix("vol-") && volume.id.count == 21)
        #expect(volume.state == .available)
        let path = folder.appendingPathComponent("vms/\(volume.id)/data.qcow2").path
        let info = try await Command(path: "/usr/bin/qemu-img").run(["info", "--output=json", path])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
        #expect(json["encrypted"] as? Bool == true)
        #expect(
            ((json["format-specific"] as? [String: Any])?["data"] as? [String: Any]).flatMap { $0["encrypt"] as? [String: Any] }?["format"]
                as? String == "luks")
        let described = try #require(try await provider.volumes(ids: [volume.id]).first)
        #expect(described.encrypted, "the provider reads encryption from the file's own header")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test func thePassphraseIsStoredOnlySealed() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let volume = try await provider.createVolume(request("h-1-attach-volume-g1"))
        let record = try #require(FileManager.default.contents(atPath: folder.appendingPathComponent("vms/\(volume.id)/volume.json").path))
        let decoded = try JSONDecoder().decode(QEMUCloudProvider.VolumeRecord.self, from: record)
        let passphrase = try sealer.open(decoded.sealedPassphrase, hostID: "h-1", kind: QEMUCloudProvider.volumeKeyKind).reveal()
        #expect(passphrase.count == 64)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("vms/\(volume.id)").path) {
            let bytes = try #require(FileManager.default.contents(atPath: folder.appendingPathComponent("vms/\(volume.id)/\(name)").path))
            #expect(bytes.range(of: Data(passphrase.utf8)) == nil, "\(name) holds the passphrase in clear")
        }
        // The sealed passphrase opens the volume: qemu-img reads it through standard input.
        let path = folder.appendingPathComponent("vms/\(volume.id)/data.qcow2").path
        _ = try await Command(path: "/usr/bin/qemu-img").run(
            [
                "check", "-q", "--object", "secret,id=s,file=/dev/stdin", "--image-opts",
                "driver=qcow2,file.filename=\(path),encrypt.key-secret=s",
            ],
            input: passphrase)
        await #expect(throws: Command.Failed.self) {
            try await Command(path: "/usr/bin/qemu-img").run(
                [
                    "check", "-q", "--object", "secret,id=s,file=/dev/stdin", "--image-opts",
                    "driver=qcow2,file.filename=\(path),encrypt.key-secret=s",
                ],
                input: String(repeating: "0", count: 64))
        }
    }

    @Test func askingForTheSameVolumeAgainReturnsItInsteadOfASecondOne() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let first = try await provider.createVolume(request("h-1-attach-volume-g1"))
        let again = try await provider.createVolume(request("h-1-attach-volume-g1"))
        #expect(first.id == again.id)
        #expect(try await provider.managedVolumes().map(\.id) == [first.id])
        #expect(try await provider.volumes(hostIDs: ["h-1"]).map(\.id) == [first.id])
        #expect(try await provider.volumes(hostIDs: ["h-2"]).isEmpty)
    }

    @Test func aDeletedVolumeLeavesATombstoneSoItsKeyNeverCreatesAnother() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let volume = try await provider.createVolume(request("h-1-attach-volume-g1"))
        try await provider.deleteVolume(volumeID: volume.id)
        try await provider.deleteVolume(volumeID: volume.id)  // already gone is success
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("vms/\(volume.id)/data.qcow2").path))
        #expect(try await provider.volumes(ids: [volume.id]).first?.state == .deleted)
        #expect(try await provider.managedVolumes().isEmpty)
        #expect(try await provider.createVolume(request("h-1-attach-volume-g1")).state == .deleted)
    }

    @Test func unknownOrRemovedInstancesAreAbsentOrTerminatedAndRemovingThemAgainIsFine() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(try await provider.instances(ids: ["i-0123456789abcdef0", "../etc"]).isEmpty)
        try await provider.terminate(instanceID: "i-0123456789abcdef0")
        try await provider.deleteVolume(volumeID: "vol-0123456789abcdef0")
    }

    @Test func aLaunchWithoutTheBaseImageSaysHowToBuildIt() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let launch = LaunchRequest(
            hostID: "h-1", hostName: "web-01.onetouch.test", role: "web", instanceType: "local", userData: Data("#cloud-config\n".utf8),
            idempotencyKey: "h-1-provision-g1", tags: [ManagedTags.hostID: "h-1"])
        let error = await #expect(throws: StepError.self) { try await provider.launch(launch) }
        #expect(error?.description.contains("scripts/build-image") == true)
    }

    @Test func theVMReachesOnlyTheConfiguredForwardsAndOutlivesServe() {
        let arguments = provider.arguments("i-0123456789abcdef0")
        let network = arguments[arguments.firstIndex(of: "-netdev")! + 1]
        #expect(network.hasPrefix("user,id=net0,restrict=on,"))
        #expect(network.components(separatedBy: "guestfwd=").count - 1 == 2)
        #expect(network.contains("guestfwd=tcp:10.0.2.100:8780-cmd:/usr/bin/socat STDIO TCP:127.0.0.1:40123"))
        #expect(arguments.contains("-daemonize"), "a VM must survive a crash or restart of serve")
        #expect(!arguments.contains("-no-reboot"), "a playbook that reboots the guest must not end the VM")
        #expect(arguments.contains("-nodefaults"))
    }
}
