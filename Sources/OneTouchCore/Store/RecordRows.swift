import Foundation
import GRDB

// Rows to records and back, column by column. GRDB would derive these from `Codable`, but its
// generic coders were a fifth of the engine's CPU in the benchmark (docs/performance.md); the column
// names are the `CodingKeys` of each record and the migrations' schema.

extension HostRecord {
    public init(row: Row) throws {
        self.init(
            id: row["id"], name: row["name"], role: row["role"], spec: row["spec"], state: row["state"],
            step: row["step"], reason: row["reason"], generation: row["generation"], facts: row["facts"],
            tokenHash: row["token_hash"], reportFloor: row["report_floor"], keepVolume: row["keep_volume"],
            nextAt: row["next_at"], version: row["version"], createdAt: row["created_at"], updatedAt: row["updated_at"])
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["name"] = name
        container["role"] = role
        container["spec"] = spec
        container["state"] = state
        container["step"] = step
        container["reason"] = reason
        container["generation"] = generation
        container["facts"] = facts
        container["token_hash"] = tokenHash
        container["report_floor"] = reportFloor
        container["keep_volume"] = keepVolume
        container["next_at"] = nextAt
        container["version"] = version
        container["created_at"] = createdAt
        container["updated_at"] = updatedAt
    }
}

extension AttemptRecord {
    public init(row: Row) throws {
        self.init(
            id: row["id"], hostID: row["host_id"], step: row["step"], generation: row["generation"], attempt: row["attempt"],
            idempotencyKey: row["idempotency_key"], startedAt: row["started_at"], finishedAt: row["finished_at"],
            deadline: row["deadline"], outcome: row["outcome"], errorClass: row["error_class"],
            errorMessage: row["error_message"], data: row["data"])
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["host_id"] = hostID
        container["step"] = step
        container["generation"] = generation
        container["attempt"] = attempt
        container["idempotency_key"] = idempotencyKey
        container["started_at"] = startedAt
        container["finished_at"] = finishedAt
        container["deadline"] = deadline
        container["outcome"] = outcome
        container["error_class"] = errorClass
        container["error_message"] = errorMessage
        container["data"] = data
    }
}

extension EventRecord {
    public init(row: Row) throws {
        self.init(
            id: row["id"], hostID: row["host_id"], at: row["at"], fromState: row["from_state"], toState: row["to_state"],
            step: row["step"], reason: row["reason"], actor: row["actor"])
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["host_id"] = hostID
        container["at"] = at
        container["from_state"] = fromState
        container["to_state"] = toState
        container["step"] = step
        container["reason"] = reason
        container["actor"] = actor
    }
}

extension ReportRecord {
    public init(row: Row) throws {
        self.init(
            id: row["id"], hostID: row["host_id"], stage: row["stage"], exitStatus: row["exit_status"], detail: row["detail"],
            receivedAt: row["received_at"], failedStage: (row["failed_stage"] as String?).flatMap(FailedStage.init(rawValue:)))
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["host_id"] = hostID
        container["stage"] = stage
        container["exit_status"] = exitStatus
        container["detail"] = detail
        container["received_at"] = receivedAt
        container["failed_stage"] = failedStage?.rawValue
    }
}

extension SecretRecord {
    public init(row: Row) throws {
        self.init(
            hostID: row["host_id"], kind: row["kind"], sealed: row["sealed"], createdAt: row["created_at"],
            deliveredAt: row["delivered_at"], wipedAt: row["wiped_at"])
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["host_id"] = hostID
        container["kind"] = kind
        container["sealed"] = sealed
        container["created_at"] = createdAt
        container["delivered_at"] = deliveredAt
        container["wiped_at"] = wipedAt
    }
}
