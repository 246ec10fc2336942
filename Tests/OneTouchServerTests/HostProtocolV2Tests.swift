import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import OneTouchCore
import OneTouchServer
import OneTouchTesting
import Testing

@Suite("Host API v2: the task a failed host polls, the volume after ready, the failed stage")
struct HostProtocolV2Tests: APITest {
    func task(_ client: any TestClientProtocol, _ id: String, _ token: Secret) async throws -> HostTask {
        try await client.execute(uri: "/v1/hosts/\(id)/task", method: .get, headers: bearer(token)) { response in
            #expect(response.status == .ok)
            return try JSONDecoder().decode(HostTask.self, from: Data(buffer: response.body))
        }
    }

    @Test func aHostThatFailedSeesANewAttemptOnlyAfterARetry() async throws {
        try await withServer { bed, client in
            bed.configExitStatus["web-01"] = 2
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created)
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-01").hostState == .waiting(.bootstrap))
            let booting = try await task(client, created.id, token)
            #expect(booting.step == "bootstrap")
            try await bed.settle()
            #expect(try bed.host("web-01").hostState.kind == .failed)
            let failed = try await task(client, created.id, token)
            #expect(failed.step == "none")
            #expect(failed.attempt == booting.attempt, "nothing new to run until someone retries")

            bed.configExitStatus["web-01"] = 0
            _ = try await bed.service.retry("web-01", from: .configPull, actor: "test")
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            let retried = try await task(client, created.id, token)
            #expect(retried.step == "config-pull")
            #expect(retried.attempt != failed.attempt, "the retry is a new attempt the host picks up")
        }
    }

    @Test func theBootstrapTokenStopsWorkingAtReady() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            try await bed.settle()
            #expect(try bed.host("web-01").hostState == .ready)
            #expect(try bed.host("web-01").tokenHash == nil)
            // Every route: the bootstrap (401: token revoked, host ready or destroyed) stops there.
            for (method, path) in [
                (HTTPRequest.Method.get, "volume"), (.get, "task"), (.get, "enrollment"), (.get, "config-credential"), (.post, "claim"),
            ] {
                try await client.execute(uri: "/v1/hosts/\(created.id)/\(path)", method: method, headers: bearer(try bed.tokenFor(created)))
                {
                    #expect($0.status == .unauthorized, "\(path)")
                }
            }
            // Nothing can make a ready host's machine run a step again: only a new machine.
            await #expect(throws: ServiceError.self) { try await bed.service.retry("web-01", from: .configPull, actor: "test") }
            do { _ = try await bed.service.retry("web-01", from: .configPull, actor: "test") } catch {
                #expect("\(error)".contains("fix the configuration there, or run `onetouch retry web-01 --from provision`"))
            }
        }
    }

    @Test func aFailureReportNamesTheHostsOwnStageAndTheStepToRetry() async throws {
        try await withServer { bed, client in
            bed.silentHosts.insert("web-01")
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created)
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/reports", method: .post, headers: bearer(token),
                body: ByteBuffer(
                    string: #"{"stage":"failed","failedStage":"enrollment","exitStatus":1,"logTail":"kadmin: unable to get default realm"}"#
                )
            ) { response in
                #expect(response.status == .ok)
                let answer = try JSONDecoder().decode(ReportAnswer.self, from: Data(buffer: response.body))
                #expect(answer.attempt == (try await task(client, created.id, token)).attempt)
            }
            try await bed.settle()
            let host = try bed.host("web-01")
            #expect(host.hostState.kind == .failed)
            #expect(host.reason?.contains("Kerberos enrollment failed on the host") == true, "\(host.reason ?? "")")
            #expect(host.reason?.contains("kadmin: unable to get default realm") == true)
            #expect(host.reason?.contains("--from preregister") == true)
            #expect(host.reason?.contains("configuration pull") == false)
        }
    }

    @Test func theRepositoryCredentialIsServedWhileTheHostIsSetUpAndNotOnceItIsReady() async throws {
        try await withServer { bed, _ in
            let service = HostService(
                store: bed.store, secrets: SecretBox(masterKey: try SecretBox.loadOrCreateMasterKey(at: bed.masterKeyPath)),
                renderer: UserDataRenderer(
                    publicURL: "http://127.0.0.1:8780", configRepository: "git@git.example.test:config.git", configBranch: "main",
                    pullPeriod: .seconds(1800)),
                roles: EngineTestBed.roles, domain: "onetouch.test", directory: bed.directoryService, clock: bed.clock, ids: bed.ids,
                logger: bed.logs.logger(), repositoryCredential: RepositoryCredential(kind: .sshKey, secret: Secret("deploy-key-text")),
                wake: { _, _ in })
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created).reveal()
            #expect(try service.repositoryCredential(hostID: created.id, token: token)?.secret.reveal() == "deploy-key-text")
            try await bed.settle()
            #expect(try bed.host("web-01").hostState == .ready)
            // Whoever reads a ready host's user-data has its token, which no longer works.
            #expect(throws: ServiceError(.unauthorized, "unknown host or invalid token")) {
                try service.repositoryCredential(hostID: created.id, token: token)
            }
        }
    }

    @Test func theVolumeAnswerNamesTheDeviceTheCloudAttachedItAsSoAXenGuestFindsIt() async throws {
        try await withServer(cloud: FakeCloud(attachmentDevice: "/dev/sdf")) { bed, client in
            bed.silentHosts.insert("web-01")
            let created = try await bed.create("web-01")
            let token = try bed.tokenFor(created)
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            _ = try await bed.service.report(hostID: created.id, token: token.reveal(), .init(stage: .booted))
            for _ in 0..<10 { await bed.engine.runUntilIdle() }
            #expect(try bed.host("web-01").step == .configPull)
            try await client.execute(uri: "/v1/hosts/\(created.id)/volume", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .ok)
                let body = try JSONDecoder().decode(VolumeBody.self, from: Data(buffer: response.body))
                #expect(body == VolumeBody(volumeId: try bed.host("web-01").decodedFacts.volumeID ?? "-", device: "/dev/sdf"))
            }
        }
    }

    @Test func noCredentialIsServedWhenTheRepositoryNeedsNone() async throws {
        try await withServer { bed, client in
            let created = try await bed.create("web-01")
            try await client.execute(
                uri: "/v1/hosts/\(created.id)/config-credential", method: .get, headers: bearer(try bed.tokenFor(created))
            ) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/v1/hosts/\(created.id)/config-credential", method: .get) {
                #expect($0.status == .unauthorized)
            }
        }
    }
}
