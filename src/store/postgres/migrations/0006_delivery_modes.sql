-- listrelay schema, version 6: per-member delivery modes (issue 14).

-- A member's delivery mode lives in its record (`data`), like its other
-- flags; PostgreSQL keeps a copy in a column of its own so that a digest
-- audience is read through an index. Rows from before (no `delivery_mode`
-- in the record) read as `regular`, as `Member` deserializes them.
ALTER TABLE members ADD COLUMN delivery_mode text COLLATE "C"
    GENERATED ALWAYS AS (coalesce(data->>'delivery_mode', 'regular')) STORED;

-- The members of one mode other than `regular`, in planning order (domain,
-- local part): a digest issue's audience is read by an index range scan,
-- not by scanning the whole list. Regular delivery reads the primary key.
CREATE INDEX members_audience ON members (list, delivery_mode, domain, local)
    WHERE delivery_mode <> 'regular';
