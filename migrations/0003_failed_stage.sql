-- onetouch schema, version 3: a host's failure report names the stage of its own that failed.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- A host enrolls, mounts its volume and pulls its configuration; when one of them fails, the reason an
-- operator reads must name that stage (enrollment, not "config-pull" with an earlier stage's output).
ALTER TABLE reports ADD COLUMN failed_stage TEXT
    CHECK (failed_stage IS NULL OR failed_stage IN ('packages','enrollment','volume','config-pull'));
