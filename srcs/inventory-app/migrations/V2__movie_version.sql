-- A movie's version, bumped by every change: its ETag ("v<version>"), what If-Match compares
-- before a write, and what a change event says the movie became.
ALTER TABLE movies ADD COLUMN version BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1);
