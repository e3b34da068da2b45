-- listrelay schema, version 1. Text keys use the "C" collation so that every
-- scan returns rows in the byte order the embedded store uses.

-- Milliseconds since the epoch on the database's clock: every lease is set and
-- compared with this one clock, whatever the hosts' clocks say.
CREATE FUNCTION lr_now_ms() RETURNS bigint
    LANGUAGE sql VOLATILE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

CREATE TABLE domains (
    name text COLLATE "C" PRIMARY KEY,
    data jsonb NOT NULL
);

CREATE TABLE lists (
    key text COLLATE "C" PRIMARY KEY,
    domain text COLLATE "C" NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX lists_domain ON lists (domain);

-- Keyed list, domain, local part: a scan yields a list's members grouped by
-- domain, which is how fan-out cuts chunks.
CREATE TABLE members (
    list text COLLATE "C" NOT NULL REFERENCES lists (key) ON DELETE CASCADE,
    domain text COLLATE "C" NOT NULL,
    local text COLLATE "C" NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (list, domain, local)
);

-- Accepted messages and their bodies: no host depends on another's disk.
CREATE TABLE messages (
    id text COLLATE "C" PRIMARY KEY,
    list text COLLATE "C" NOT NULL,
    is_post boolean NOT NULL,
    done boolean NOT NULL DEFAULT false,
    meta jsonb NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX messages_posts ON messages (id) WHERE is_post AND NOT done;

-- The Message-ID window: the primary key is the unique constraint that makes
-- two hosts receiving the same post at once accept it once.
CREATE TABLE window_entries (
    list text COLLATE "C" NOT NULL,
    message_id text COLLATE "C" NOT NULL,
    message text NOT NULL,
    content_hash text NOT NULL,
    -- Seconds since the epoch; NULL while the post is queued.
    expires_at bigint,
    PRIMARY KEY (list, message_id)
);
CREATE INDEX window_expiry ON window_entries (expires_at) WHERE expires_at IS NOT NULL;

-- Each list's post counter (rotates which members get VERP).
CREATE TABLE counters (
    list text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL
);

CREATE TABLE jobs (
    message text COLLATE "C" PRIMARY KEY,
    list text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    verp_percent smallint NOT NULL,
    max_rcpt_per_txn integer NOT NULL,
    chunks integer NOT NULL,
    chunks_done integer NOT NULL,
    recipients bigint NOT NULL,
    delivered bigint NOT NULL,
    failed bigint NOT NULL,
    created_at bigint NOT NULL
);

-- One row per chunk: its lease (owner, generation, expiry on the database
-- clock), progress, retries and its member list.
CREATE TABLE chunks (
    job text COLLATE "C" NOT NULL REFERENCES jobs (message) ON DELETE CASCADE,
    idx integer NOT NULL,
    members integer NOT NULL,
    generation bigint NOT NULL DEFAULT 0,
    owner text,
    lease_expires_ms bigint NOT NULL DEFAULT 0,
    not_before_ms bigint NOT NULL DEFAULT 0,
    cursor integer NOT NULL DEFAULT 0,
    retry jsonb NOT NULL DEFAULT '[]',
    delivered integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    addresses text[] NOT NULL,
    PRIMARY KEY (job, idx)
);

CREATE TABLE failures (
    id bigserial PRIMARY KEY,
    list text COLLATE "C" NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX failures_list ON failures (list, id);
