-- onetouch schema, version 1.
-- A shipped migration is never edited: add a new numbered file instead.

-- One row per host the team asked for. `name` is unique among hosts that are not destroyed.
CREATE TABLE hosts (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    spec          TEXT NOT NULL,                 -- desired spec, JSON
    state         TEXT NOT NULL CHECK (state IN
                    ('pending','running','waiting','ready','failed','paused','destroying','destroyed')),
    step          TEXT,                          -- the step the state refers to, if any
    reason        TEXT,                          -- why a host failed or paused, and what to do
    generation    INTEGER NOT NULL DEFAULT 1,    -- bumped when a host is re-provisioned from scratch
    facts         TEXT NOT NULL DEFAULT '{}',    -- what the steps learned (instance id, ip, volume id...), JSON
    token_hash    BLOB,                          -- SHA-256 of the per-host bearer token; NULL once revoked
    report_floor  INTEGER NOT NULL DEFAULT 0,    -- host reports with an id at or below this are stale
    keep_volume   INTEGER NOT NULL DEFAULT 0,
    next_at       TEXT,                          -- when the engine should act next (backoff, deadline)
    version       INTEGER NOT NULL DEFAULT 0,    -- optimistic concurrency for state changes
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX hosts_live_name ON hosts(name) WHERE state <> 'destroyed';
CREATE INDEX hosts_unfinished ON hosts(state) WHERE state IN ('pending','running','waiting','destroying');

-- One row per attempt of a step. The row is committed with its idempotency key before the external
-- call and finished after it.
CREATE TABLE step_attempts (
    id              INTEGER PRIMARY KEY,
    host_id         TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    step            TEXT NOT NULL,
    generation      INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    deadline        TEXT,
    outcome         TEXT CHECK (outcome IN ('succeeded','waiting','retrying','failed','paused','abandoned')),
    error_class     TEXT CHECK (error_class IN ('transient','permanent','needs-human')),
    error_message   TEXT,
    data            TEXT NOT NULL DEFAULT '{}',
    UNIQUE (host_id, step, generation, attempt)
) STRICT;
CREATE INDEX step_attempts_open ON step_attempts(host_id, step, generation) WHERE finished_at IS NULL;

-- Append-only history: every transition, written in the same transaction as the state change.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    step        TEXT,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL
) STRICT;
CREATE INDEX events_host ON events(host_id, id);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- What hosts told us through the host API.
CREATE TABLE reports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id      TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    stage        TEXT NOT NULL CHECK (stage IN ('booted','volume-mounted','configured','failed')),
    exit_status  INTEGER,
    detail       TEXT,
    received_at  TEXT NOT NULL
) STRICT;
CREATE INDEX reports_host ON reports(host_id, id);

-- Secrets, sealed with AES-GCM under the master key (nonce || ciphertext || tag). Never plaintext.
CREATE TABLE secrets (
    host_id       TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('one-time-password','volume-key')),
    sealed        BLOB,                          -- NULL once wiped
    created_at    TEXT NOT NULL,
    delivered_at  TEXT,
    wiped_at      TEXT,
    PRIMARY KEY (host_id, kind)
) STRICT;

-- One writer per host set: a serve process holds the lease while it drives hosts.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;
