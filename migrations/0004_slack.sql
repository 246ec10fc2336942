-- onetouch schema, version 4: Slack announcements and chatops (notifier `kind: slack`).
-- A shipped migration is never edited: add a new numbered file instead.
--
-- The announcer follows the append-only events log by id. What it has read, the threads it keeps and
-- the messages it owes Slack are written in one transaction, so a crash neither loses nor repeats an
-- event. A message is marked `sending` (committed) before its request and `sent` after; one found
-- `sending` after a crash may have been posted: in bot mode it is looked up by its metadata key first.

-- How far each announcer has read the events log.
CREATE TABLE announcer_cursors (
    name           TEXT PRIMARY KEY NOT NULL,
    last_event_id  INTEGER NOT NULL
) STRICT;

-- Bot mode: one thread per host. `parent` is the first message as it should read now (JSON);
-- `version` is bumped on every change, `shown` is the version Slack shows.
CREATE TABLE slack_threads (
    host_id     TEXT PRIMARY KEY NOT NULL REFERENCES hosts(id),
    channel     TEXT NOT NULL,
    event_id    INTEGER NOT NULL,              -- the event that opened the thread (queue order)
    state       TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued','sending','posted','dropped','frozen')),
    sends       INTEGER NOT NULL DEFAULT 0,    -- requests that may have posted it
    ts          TEXT,                          -- Slack's id of the parent, once posted or found
    parent      TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    shown       INTEGER NOT NULL DEFAULT 0,
    changed_at  INTEGER NOT NULL,              -- event id of the latest change (update order)
    note        TEXT,                          -- why dropped or frozen
    created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX slack_threads_queued ON slack_threads(event_id) WHERE state IN ('queued','sending');
CREATE INDEX slack_threads_stale ON slack_threads(changed_at) WHERE state = 'posted' AND shown < version;

-- Messages owed to Slack, sent in id order per host.
CREATE TABLE slack_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     TEXT NOT NULL REFERENCES hosts(id),
    event_id    INTEGER NOT NULL,
    key         TEXT NOT NULL UNIQUE,          -- the metadata key that finds the message again
    message     TEXT NOT NULL,                 -- JSON: text, blocks, key
    state       TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued','sending','sent','dropped')),
    sends       INTEGER NOT NULL DEFAULT 0,
    ts          TEXT,
    note        TEXT,                          -- why dropped, or the last error
    created_at  TEXT NOT NULL,
    sent_at     TEXT
) STRICT;
CREATE INDEX slack_outbox_owed ON slack_outbox(host_id, id) WHERE state IN ('queued','sending');

-- Signatures of slash commands and button clicks acted on: a replay within the 5-minute window of
-- Slack's signing is refused.
CREATE TABLE slack_requests_seen (
    signature  TEXT PRIMARY KEY NOT NULL,
    seen_at    TEXT NOT NULL
) STRICT;
