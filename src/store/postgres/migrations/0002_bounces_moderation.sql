-- listrelay schema, version 2: bounce scoring, moderation and subscription.

-- A message's state as a column ('queued', 'held' or 'done') instead of the
-- `done` flag: a held post is neither planned nor counted as queued. The
-- JSON record (`meta`) carries every MessageMeta field and is kept in step.
ALTER TABLE messages ADD COLUMN state text COLLATE "C" NOT NULL DEFAULT 'queued'
    CHECK (state IN ('queued', 'held', 'done'));
UPDATE messages SET state = 'done', meta = jsonb_set(meta, '{state}', '"done"') WHERE done;
UPDATE messages SET state = 'held' WHERE NOT done AND meta->>'state' = 'held';
DROP INDEX messages_posts;
ALTER TABLE messages DROP COLUMN done;
CREATE INDEX messages_queued_posts ON messages (id) WHERE is_post AND state = 'queued';

-- Per-member bounce records, by scope key (`bounce::scope_key`) and member.
CREATE TABLE bounce_states (
    scope text COLLATE "C" NOT NULL,
    member text COLLATE "C" NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (scope, member)
);

-- Policy bounces of one post of a list; pruned by first_at (seconds).
CREATE TABLE post_bounces (
    list text COLLATE "C" NOT NULL,
    post text COLLATE "C" NOT NULL,
    first_at bigint NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (list, post)
);
CREATE INDEX post_bounces_first_at ON post_bounces (first_at);

-- Held posts: the index the moderators act from (the post itself is the
-- messages row, in state 'held').
CREATE TABLE held_posts (
    id text COLLATE "C" PRIMARY KEY,
    list text COLLATE "C" NOT NULL,
    hash text COLLATE "C" NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX held_posts_list_hash ON held_posts (list, hash, id);

-- Pending confirmations, under the hash of their token (a token works once).
CREATE TABLE pending (
    token_hash text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX pending_expiry ON pending (expires_at);

-- Mails sent to an address per day (seconds / 86400), for the rate limit.
CREATE TABLE rate_counters (
    address text COLLATE "C" NOT NULL,
    day bigint NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (address, day)
);
CREATE INDEX rate_counters_day ON rate_counters (day);
