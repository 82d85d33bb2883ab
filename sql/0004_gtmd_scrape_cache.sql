-- Website text for generation, cached by the SHA-256 (hex) of the upstream's
-- canonical URL; rows older than WEB_CACHE_TTL_HOURS are ignored on read and
-- swept on write, oldest first through the fetched_at index.

CREATE TABLE IF NOT EXISTS gtm_scrape_cache (
    key char(64) NOT NULL,
    url text NOT NULL,
    content text NOT NULL,
    source varchar(16) NOT NULL,
    fetched_at timestamp without time zone NOT NULL DEFAULT gtm_utcnow(),
    CONSTRAINT gtm_scrape_cache_pkey PRIMARY KEY (key)
);
CREATE INDEX IF NOT EXISTS gtm_scrape_cache_fetched_at ON gtm_scrape_cache (fetched_at);
