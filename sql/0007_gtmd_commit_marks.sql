-- One row per write transaction, inserted with its BEGIN: a random token that
-- gtmd looks up when its session died while COMMIT was under way, so it can
-- tell the client whether the write was stored. The lookup inserts the token
-- itself (by_resolver) when the transaction did not commit, so that a lookup
-- whose own answer is lost and is asked again is not taken for the write.
-- Rows older than a few minutes are of no use and are swept every minute;
-- BRIN keeps that sweep cheap on a table that only grows at its end.

CREATE TABLE IF NOT EXISTS gtm_commit_marks (
    token uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    by_resolver boolean NOT NULL DEFAULT false,
    CONSTRAINT gtm_commit_marks_pkey PRIMARY KEY (token)
);
CREATE INDEX IF NOT EXISTS gtm_commit_marks_created_at ON gtm_commit_marks USING brin (created_at);
