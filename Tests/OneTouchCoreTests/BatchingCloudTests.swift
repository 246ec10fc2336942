import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("Describe calls of many hosts are batched")
struct BatchingCloudTests {
    @Test func concurrentDescribesBecomeOneCallAndEachCallerGetsItsOwn() async throws {
        let cloud = FakeCloud()
        var ids: [String] = []
        for i in 0..<30 {
            ids.append(
                try await cloud.launch(
                    LaunchRequest(
                        hostID: "h-\(i)", hostName: "h\(i)", role: "web", instanceType: "t", userData: Data(),
                        idempotencyKey: "k\(i)", tags: [:])
                ).id)
        }
        let batching = BatchingCloud(cloud, window: .milliseconds(30), maxIDs: 100)
        let before = cloud.calls("describeInstances")
        let results = try await withThrowingTaskGroup(of: (String, [Instance]).self) { group in
            for id in ids { group.addTask { (id, try await batching.instances(ids: [id, "i-unknown"])) } }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(cloud.calls("describeInstances") - before == 1)
        for id in ids { #expect(results[id]?.map(\.id) == [id]) }
    }

    @Test func largeBatchesAreSplitAtTheIDLimit() async throws {
        let cloud = FakeCloud()
        let batching = BatchingCloud(cloud, window: .milliseconds(30), maxIDs: 10)
        let before = cloud.calls("describeVolumes")
        try await withThrowingTaskGroup(of: [Volume].self) { group in
            for i in 0..<25 { group.addTask { try await batching.volumes(ids: ["vol-\(i)"]) } }
            for try await _ in group {}
        }
        #expect(cloud.calls("describeVolumes") - before == 3)
    }

    @Test func aFailedBatchFailsEveryCaller() async throws {
        let cloud = FakeCloud()
        cloud.faults.inject(.transient, into: "describeInstances")
        let batching = BatchingCloud(cloud, window: .milliseconds(30))
        await withTaskGroup(of: Bool.self) { group in
            for i in 0..<3 {
                group.addTask { (try? await batching.instances(ids: ["i-\(i)"])) == nil }
            }
            for await failed in group { #expect(failed) }
        }
    }
}
