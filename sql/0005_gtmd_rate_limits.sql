-- Rate limits: counters shared by every worker and every gtmd instance on
-- this database, and the plan tier of each user (no row = free).

-- One row per counter, e.g. 'u:<user id>:account_generate', 'u:<user id>:day',
-- 'd:<client ip>:company_generate'.  A row whose reset_at has passed counts as
-- zero and gets a new window on its next hit; the ratelimit module deletes
-- such rows now and then.
CREATE TABLE IF NOT EXISTS gtm_rate_counters (
    bucket text NOT NULL,
    count integer NOT NULL DEFAULT 0,
    reset_at timestamp with time zone NOT NULL,
    CONSTRAINT gtm_rate_counters_pkey PRIMARY KEY (bucket)
);
-- for the sweep of expired rows
CREATE INDEX IF NOT EXISTS gtm_rate_counters_reset_at ON gtm_rate_counters (reset_at);

-- Set by an operator (there is no route for it); deleting the user deletes it.
CREATE TABLE IF NOT EXISTS gtm_user_tiers (
    user_id uuid NOT NULL,
    tier varchar(20) NOT NULL DEFAULT 'free',
    CONSTRAINT gtm_user_tiers_pkey PRIMARY KEY (user_id),
    CONSTRAINT gtm_user_tiers_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT gtm_user_tiers_tier_check CHECK (tier IN ('free', 'pro', 'enterprise'))
);
