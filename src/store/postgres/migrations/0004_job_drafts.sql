-- listrelay schema, version 4: jobs planned in steps.
--
-- A post to a million members is planned with the memory of one batch of
-- chunks: its job row is written first as a draft held by one planner under
-- a lease (on the database clock), its chunks are added in batches, and the
-- seal (one transaction that also takes the list's post counter) makes them
-- claimable. A draft whose planner died is taken over once its lease
-- expires, its chunks deleted, and the post planned again. Rows written
-- before this version are whole jobs: sealed.
ALTER TABLE jobs ADD COLUMN sealed boolean NOT NULL DEFAULT true;
ALTER TABLE jobs ADD COLUMN planner text;
ALTER TABLE jobs ADD COLUMN plan_expires_ms bigint NOT NULL DEFAULT 0;

-- Store::sync: progress writes commit asynchronously (their WAL is flushed
-- by the WAL writer within 3 x wal_writer_delay); a sync commits a write of
-- its own synchronously, which flushes the WAL up to it and so every commit
-- before it. One row per server process, so concurrent syncs never wait on
-- each other's row lock; rows of processes gone are pruned at open.
CREATE TABLE sync_marks (
    pid integer PRIMARY KEY,
    n bigint NOT NULL
);
