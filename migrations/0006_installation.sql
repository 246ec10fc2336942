-- onetouch schema, version 6: the installation this database belongs to.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- Every instance and volume onetouch creates is tagged onetouch:installation=<id>, and reconcile looks
-- only at its own installation's resources (and at untagged ones made before this version): a new
-- database, or a second onetouch in the same account, never takes another installation's VMs for
-- orphans.
CREATE TABLE installation (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

INSERT INTO installation (id, created_at)
VALUES ('ot-' || lower(hex(randomblob(8))), strftime('%Y-%m-%d %H:%M:%f', 'now'));
