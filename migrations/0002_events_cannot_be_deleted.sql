-- onetouch schema, version 2: the event log loses no row either.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- Version 1 refused UPDATEs of events but not DELETEs. Hosts are never deleted (a destroyed host
-- keeps its row and its history), so this also stops a hand-made DELETE of a host from taking its
-- history with it through ON DELETE CASCADE.
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
