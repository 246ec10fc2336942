-- onetouch schema, version 5: what each host ever created, kept for teardown.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- A host's facts name the instance, volume and directory entry of its current generation, and a
-- concurrent destroy or retry can make the engine's commit of a step's result fail (the row moved).
-- This ledger is written with every commit of facts and, when such a commit is refused, on its own,
-- so teardown finds every VM and volume a host made even while the cloud does not list them yet, and
-- removes a directory entry only if this host made it.
CREATE TABLE host_resources (
    host_id      TEXT NOT NULL REFERENCES hosts(id),
    kind         TEXT NOT NULL CHECK (kind IN ('instance','volume','directory-entry')),
    resource_id  TEXT NOT NULL,
    generation   INTEGER NOT NULL,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (host_id, kind, resource_id)
) STRICT;
