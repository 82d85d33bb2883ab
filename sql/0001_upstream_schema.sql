-- The Blossomer upstream's final schema (alembic head b7adaca9c685): the same
-- tables, columns, types and constraint names.  On a database that already
-- carries it, every statement here is a no-op and no row is touched.
-- Timestamps are naive UTC, as the upstream wrote them.

CREATE TABLE IF NOT EXISTS users (
    id uuid NOT NULL,
    created_at timestamp without time zone,
    last_login timestamp without time zone,
    role varchar(20) DEFAULT 'user',
    neon_auth_user_id varchar(255),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_neon_auth_user_id_key UNIQUE (neon_auth_user_id)
);
CREATE INDEX IF NOT EXISTS idx_users_role ON users (role);

CREATE TABLE IF NOT EXISTS companies (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    url varchar(500) NOT NULL,
    data jsonb,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT companies_pkey PRIMARY KEY (id),
    CONSTRAINT companies_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id)
);

CREATE TABLE IF NOT EXISTS accounts (
    id uuid NOT NULL,
    company_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT target_accounts_pkey PRIMARY KEY (id),
    CONSTRAINT target_accounts_company_id_fkey FOREIGN KEY (company_id) REFERENCES companies (id)
);

CREATE TABLE IF NOT EXISTS personas (
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT target_personas_pkey PRIMARY KEY (id),
    CONSTRAINT personas_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)
);

CREATE TABLE IF NOT EXISTS campaigns (
    id uuid NOT NULL,
    account_id uuid NOT NULL,
    persona_id uuid NOT NULL,
    name varchar(255) NOT NULL,
    type varchar(50) NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp without time zone,
    updated_at timestamp without time zone,
    CONSTRAINT campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT campaigns_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
    CONSTRAINT campaigns_persona_id_fkey FOREIGN KEY (persona_id) REFERENCES personas (id)
);
