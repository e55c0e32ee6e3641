-- Failure counts behind the lockout and the rate limits (flaskbbd's own table, also
-- added to a FlaskBB database): one row per counted thing, incremented by one upsert,
-- so that every daemon on the database sees the same counts and a restart forgets
-- nothing. `kind` says whose row it is ("lockout", or "plugin:<instance>"),
-- `subject` what is counted (an account, a plugin's key), `address` the client
-- address it is counted for ('' for all). Times are Unix milliseconds; a row whose
-- `expires` has passed counts as zero and is pruned.
CREATE TABLE IF NOT EXISTS flaskbbd_penalties (
    kind VARCHAR(255) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    address VARCHAR(64) NOT NULL DEFAULT '',
    failures INTEGER NOT NULL,
    last_failure BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, address)
);
CREATE INDEX IF NOT EXISTS flaskbbd_penalties_expires ON flaskbbd_penalties (expires);
