-- listrelay schema, version 3: members by key, for large lists.

-- A member's key (`local@domain`, as `Address::key` and the embedded store
-- spell it), kept by PostgreSQL itself, with an index per list: a roster is
-- walked page by page in key order (`members_page`) by an index range scan,
-- whatever the list's size.
ALTER TABLE members ADD COLUMN key text COLLATE "C"
    GENERATED ALWAYS AS (local || '@' || domain) STORED;
CREATE UNIQUE INDEX members_list_key ON members (list, key);
