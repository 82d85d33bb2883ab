-- gtmd's additions to the upstream tables: an index on every foreign key
-- (each also serves the stable "created_at, id" list order), and the
-- timestamp format the upstream's JSON used.

CREATE INDEX IF NOT EXISTS gtm_companies_user_created ON companies (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS gtm_accounts_company_created ON accounts (company_id, created_at, id);
CREATE INDEX IF NOT EXISTS gtm_personas_account_created ON personas (account_id, created_at, id);
CREATE INDEX IF NOT EXISTS gtm_campaigns_account_created ON campaigns (account_id, created_at, id);
CREATE INDEX IF NOT EXISTS gtm_campaigns_persona ON campaigns (persona_id);

-- Python's datetime.isoformat() of a naive timestamp: microseconds only when
-- they are not zero, no zone suffix.
CREATE OR REPLACE FUNCTION gtm_ts(ts timestamp without time zone) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ts IS NULL THEN NULL
        WHEN date_part('microseconds', ts)::bigint % 1000000 = 0 THEN to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS')
        ELSE to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS.US')
    END
$$;

-- Now, as the naive UTC timestamp the upstream stored.
CREATE OR REPLACE FUNCTION gtm_utcnow() RETURNS timestamp without time zone
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT (clock_timestamp() AT TIME ZONE 'UTC')
$$;
