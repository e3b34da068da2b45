-- listrelay schema, version 7: digests (issue 14).

-- Posts entered for a list's digest, written by the transaction that seals
-- the post's job (so exactly once), with their own copy of the bytes: the
-- message row goes when the regular fan-out finishes. `issue` is set by the
-- cut; the rows go when their issue is queued.
CREATE TABLE digest_entries (
    list text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    post text COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    size bigint NOT NULL,
    issue text COLLATE "C",
    body bytea NOT NULL,
    PRIMARY KEY (list, seq)
);
CREATE INDEX digest_entries_issue ON digest_entries (issue) WHERE issue IS NOT NULL;

-- Issues as their cut recorded them (`data` is the record; `state` copied
-- out for the scheduler's query).
CREATE TABLE digest_issues (
    id text COLLATE "C" PRIMARY KEY,
    list text COLLATE "C" NOT NULL,
    state text NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX digest_issues_list ON digest_issues (list, id);
