import Foundation
import Logging
import OneTouchCore
import Testing

@testable import OneTouchCLI

@Suite("The qemu provider's settings: checked without writing")
struct QEMUAdapterTests {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("onetouch-qemu-adapter-\(UUID().uuidString)")

    /// A folder with an (empty) image in it, and the provider section of a configuration file there.
    func section(_ yaml: String) throws -> ConfigSection {
        let image = root.appendingPathComponent("image")
        try FileManager.default.createDirectory(at: image, withIntermediateDirectories: true)
        for name in ["base.qcow2", "vmlinuz", "initrd.img"] { try Data().write(to: image.appendingPathComponent(name)) }
        return try ConfigSection.parse(yaml: "kind: qemu\nimage: image\n" + yaml, file: root.appendingPathComponent("onetouch.yaml").path)
    }

    func make(_ section: ConfigSection) throws {
        let masterKey = root.appendingPathComponent("master.key").path
        _ = try AdapterRegistry.makeCloud(
            section, environment: [:], masterKeyFile: masterKey, logger: Logger(label: "test"), telemetry: Telemetry())
    }

    @Test func buildingTheProviderMakesNeitherItsStateFolderNorTheMasterKey() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        try make(try section("state_directory: vms\nforwards:\n  - {guest: \"10.0.2.100:8780\", host: \"127.0.0.1:8780\"}\n"))
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("vms").path), "no state folder yet")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("master.key").path), "no master key yet")
    }

    @Test func aStateFolderThatCannotBeMadeIsRefusedUnderItsKey() throws {
        defer { try? FileManager.default.removeItem(at: root) }
        let settings = try section("state_directory: plain-file/vms\n")
        try Data().write(to: root.appendingPathComponent("plain-file"))
        let error = #expect(throws: ConfigurationError.self) { try make(settings) }
        #expect(error?.path == "state_directory")
    }
}
