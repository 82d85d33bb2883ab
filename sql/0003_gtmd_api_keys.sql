-- API keys for integrators: only a SHA-256 of the key is stored; the key
-- itself is shown once, when it is made.

CREATE TABLE IF NOT EXISTS gtm_api_keys (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    key_prefix varchar(16) NOT NULL,
    key_hash char(64) NOT NULL,
    created_at timestamp without time zone NOT NULL DEFAULT gtm_utcnow(),
    last_used_at timestamp without time zone,
    CONSTRAINT gtm_api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT gtm_api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT gtm_api_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE INDEX IF NOT EXISTS gtm_api_keys_user ON gtm_api_keys (user_id, created_at, id);
