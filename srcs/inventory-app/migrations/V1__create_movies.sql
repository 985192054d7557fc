-- The movie catalogue. The application validates every field before it gets here; the
-- constraints repeat the essential rules so no other writer can store what the API refuses.
CREATE TABLE movies (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title           TEXT        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description     TEXT                 CHECK (char_length(description) <= 5000),
    release_year    SMALLINT             CHECK (release_year BETWEEN 1878 AND 2100),
    genres          TEXT[]      NOT NULL DEFAULT '{}' CHECK (cardinality(genres) <= 10),
    runtime_minutes INTEGER              CHECK (runtime_minutes BETWEEN 1 AND 1440),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
