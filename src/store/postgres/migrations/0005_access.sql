-- listrelay schema, version 5: API tokens and the audit log (issue 13).

-- Bearer tokens by their public id; `data` is the ApiToken record, which
-- holds only the SHA-256 of the token, never the token.
CREATE TABLE api_tokens (
    id text COLLATE "C" PRIMARY KEY,
    data jsonb NOT NULL
);

-- Administrative actions by time-ordered id (the time in milliseconds, hex,
-- then random bits): a page of the log is a range of ids; `at` (seconds)
-- prunes it; `list` serves `audit --list`.
CREATE TABLE audit_log (
    id text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL,
    list text COLLATE "C",
    data jsonb NOT NULL
);
CREATE INDEX audit_log_list ON audit_log (list, id) WHERE list IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
