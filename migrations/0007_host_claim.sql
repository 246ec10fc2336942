-- onetouch schema, version 7: the machine that claimed a host.
-- A shipped migration is never edited: add a new numbered file instead.
--
-- The host token is in the user-data, which more than the host can read (any local process through
-- instance metadata; an AWS principal allowed DescribeInstanceAttribute). The bootstrap script makes
-- a random boot secret at first boot and sends it with every host API call; the first one presented
-- for a generation is bound here (as SHA-256), and a call with another is refused and pauses the host.
-- A new generation (a new VM) starts unclaimed.
ALTER TABLE hosts ADD COLUMN claim_hash BLOB;
