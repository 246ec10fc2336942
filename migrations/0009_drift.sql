-- onetouch schema, version 9: configuration runs and drift.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- A host's bootstrap token closes at `ready`; its configuration runs go on reporting with a report
-- credential that can do nothing else. Only its SHA-256 is kept. `next_hash` is a rotated credential
-- handed out but not yet used: the old one keeps working until the host presents the new one, so an
-- answer lost on the way never locks the host out. Deleted at `destroy` and with a new generation.
CREATE TABLE report_credentials (
    host_id     TEXT PRIMARY KEY NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    hash        BLOB NOT NULL,
    next_hash   BLOB,
    issued_at   TEXT NOT NULL
) STRICT;

-- One row per configuration run a host reported (ansible-pull, from its timer or the first run).
CREATE TABLE config_runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id           TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    received_at       TEXT NOT NULL,
    started_at        TEXT,
    duration_seconds  REAL,
    config_commit     TEXT,
    check_mode        INTEGER NOT NULL,
    exit_status       INTEGER NOT NULL,
    ok                INTEGER,                       -- the play recap; NULL when the run gave none
    changed           INTEGER,
    unreachable       INTEGER,
    failed            INTEGER,
    skipped           INTEGER,
    changed_tasks     TEXT NOT NULL DEFAULT '[]',    -- JSON: names of the tasks that changed (or would)
    failed_tasks      TEXT NOT NULL DEFAULT '[]',    -- JSON: [{task, message}]
    output_tail       TEXT                           -- on failure: the end of the run's output
) STRICT;
CREATE INDEX config_runs_host ON config_runs(host_id, id);

-- A host's drift state, kept with its history (every transition people hear about is also an event).
-- `state` is what people see; `run_state` what the last applied run said (a check run or the end of a
-- silence goes back to it); `problem` is set while the last announcement was `failing` or `silent`, so
-- the way back to `in-sync` is announced once.
CREATE TABLE drift (
    host_id          TEXT PRIMARY KEY NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    state            TEXT CHECK (state IN ('in-sync','corrected','failing','silent')),
    run_state        TEXT CHECK (run_state IN ('in-sync','corrected','failing')),
    problem          INTEGER NOT NULL DEFAULT 0,
    since            TEXT NOT NULL,
    last_report_at   TEXT NOT NULL,
    last_run_id      INTEGER,
    last_check_id    INTEGER,
    check_requested  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Differences between a live host's cloud resources and what its role and the configuration declare.
-- A row exists while the difference does; it appeared (and was announced) at `since`.
CREATE TABLE cloud_drift (
    host_id   TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    expected  TEXT NOT NULL,
    actual    TEXT NOT NULL,
    since     TEXT NOT NULL,
    PRIMARY KEY (host_id, field)
) STRICT;
