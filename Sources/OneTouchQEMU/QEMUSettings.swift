import Foundation

/// How `provider: {kind: qemu}` runs local VMs (docs/configuration.md).
public struct QEMUSettings: Sendable, Equatable {
    /// A place a guest may reach: `guest` is the address the guest dials (inside QEMU's user-mode
    /// network, 10.0.2.0/24), `host` where the relay connects on this machine.
    public struct Forward: Sendable, Equatable {
        public var guestAddress: String
        public var guestPort: Int
        public var hostAddress: String
        public var hostPort: Int
        public init(guestAddress: String, guestPort: Int, hostAddress: String, hostPort: Int) {
            self.guestAddress = guestAddress
            self.guestPort = guestPort
            self.hostAddress = hostAddress
            self.hostPort = hostPort
        }
    }

    /// The folder `scripts/build-image` prints: `base.qcow2`, `vmlinuz`, `initrd.img`.
    public var imageDirectory: String
    /// One folder per VM and per volume.
    public var stateDirectory: String
    public var memoryMiB = 1024
    public var cpus = 2
    /// `tcg` (software emulation, works everywhere) or `kvm` (only where a boot proves it works).
    public var accelerator = "tcg"
    public var forwards: [Forward]
    public var qemuSystem = "/usr/bin/qemu-system-x86_64"
    public var qemuImg = "/usr/bin/qemu-img"
    public var isoTool = "/usr/bin/genisoimage"
    /// Started by QEMU once per guest connection: `RELAY STDIO TCP:HOST:PORT`.
    public var relay = "/usr/bin/socat"
    /// How long a guest gets to power off before its QEMU is killed.
    public var shutdownDeadline: Duration = .seconds(20)

    public init(imageDirectory: String, stateDirectory: String, forwards: [Forward]) {
        self.imageDirectory = imageDirectory
        self.stateDirectory = stateDirectory
        self.forwards = forwards
    }
}
