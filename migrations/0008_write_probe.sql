-- onetouch schema, version 8: the readiness probe's write.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- `GET /readyz` proves the database takes writes by writing this one row (a file system remounted
-- read-only, a full disk, a lost permission all show here before a host's step fails on them).
CREATE TABLE write_probe (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    written_at  TEXT NOT NULL
) STRICT;
