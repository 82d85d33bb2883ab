-- The upstream's database as its alembic chain left it at head b7adaca9c685,
-- written out by hand from its final state (upstream-behaviour §5): its own
-- constraint names, RLS enabled, no indexes on foreign keys, nullable role.
CREATE TABLE alembic_version (version_num varchar(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('b7adaca9c685');

CREATE TABLE users (
    id uuid NOT NULL,
    created_at timestamp without time zone,
    last_login timestamp without time zone,
    role varchar(20) DEFAULT 'user',
    neon_auth_user_id varchar(255),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    UNIQUE (neon_auth_user_id)
);
CREATE INDEX idx_users_role ON users (role);
CREATE TABLE companies (
    id uuid NOT NULL, user_id uuid NOT NULL, name varchar(255) NOT NULL, url varchar(500) NOT NULL,
    data jsonb, created_at timestamp without time zone, updated_at timestamp without time zone,
    CONSTRAINT companies_pkey PRIMARY KEY (id),
    FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE TABLE accounts (
    id uuid NOT NULL, company_id uuid NOT NULL, name varchar(255) NOT NULL, data jsonb NOT NULL,
    created_at timestamp without time zone, updated_at timestamp without time zone,
    CONSTRAINT target_accounts_pkey PRIMARY KEY (id),
    CONSTRAINT target_accounts_company_id_fkey FOREIGN KEY (company_id) REFERENCES companies (id)
);
CREATE TABLE personas (
    id uuid NOT NULL, account_id uuid NOT NULL, name varchar(255) NOT NULL, data jsonb NOT NULL,
    created_at timestamp without time zone, updated_at timestamp without time zone,
    CONSTRAINT target_personas_pkey PRIMARY KEY (id),
    CONSTRAINT personas_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE TABLE campaigns (
    id uuid NOT NULL, account_id uuid NOT NULL, persona_id uuid NOT NULL, name varchar(255) NOT NULL,
    type varchar(50) NOT NULL, data jsonb NOT NULL,
    created_at timestamp without time zone, updated_at timestamp without time zone,
    CONSTRAINT campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT campaigns_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id),
    CONSTRAINT campaigns_persona_id_fkey FOREIGN KEY (persona_id) REFERENCES personas (id)
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE personas ENABLE ROW LEVEL SECURITY;
ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_policy ON users USING (id = current_setting('app.current_user_id')::uuid)
    WITH CHECK (id = current_setting('app.current_user_id')::uuid);
CREATE POLICY companies_policy ON companies USING (user_id = current_setting('app.current_user_id')::uuid)
    WITH CHECK (user_id = current_setting('app.current_user_id')::uuid);

-- Rows, as the upstream wrote them (naive UTC, microseconds or not).
INSERT INTO users VALUES ('11111111-1111-4111-8111-111111111111', '2025-07-01 10:00:00', NULL, 'user', NULL),
                         ('22222222-2222-4222-8222-222222222222', '2025-07-02 11:00:00.5', NULL, NULL, NULL);
INSERT INTO companies VALUES
  ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'Acme', 'https://acme.example',
   '{"company_name": "Acme", "capabilities": ["Anvils: heavy"], "metadata": {}}', '2025-07-11 20:15:30.123456', '2025-07-11 20:15:30.123459'),
  ('aaaaaaaa-0000-4000-8000-000000000002', '22222222-2222-4222-8222-222222222222', 'Other', 'https://other.example',
   NULL, '2025-07-12 08:00:00', '2025-07-12 08:00:00');
INSERT INTO accounts VALUES
  ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001', 'Mid-market SaaS', '{"target_account_name": "Mid-market SaaS"}',
   '2025-07-11 20:16:00', '2025-07-11 20:16:00');
INSERT INTO personas VALUES
  ('cccccccc-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001', 'VP Ops', '{"target_persona_name": "VP Ops"}',
   '2025-07-11 20:17:00', '2025-07-11 20:17:00');
INSERT INTO campaigns VALUES
  ('dddddddd-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001', 'cccccccc-0000-4000-8000-000000000001',
   'Intro email', 'email', '{"subjects": {"primary": "Hi"}}', '2025-07-11 20:18:00', NULL);
