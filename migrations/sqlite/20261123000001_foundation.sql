-- Foundation: organisations, accounts, sessions, model catalogue, devices, audit trail.
-- Times are UTC (RFC 3339 text); dates are ISO 8601 text.

CREATE TABLE organisations (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('operator', 'provider')),
    name            TEXT    NOT NULL,
    org_number      TEXT    UNIQUE,
    contract_start  TEXT,
    contract_end    TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX organisations_one_operator ON organisations (kind) WHERE kind = 'operator';

CREATE TABLE it_contacts (
    id        INTEGER PRIMARY KEY,
    org_id    INTEGER NOT NULL REFERENCES organisations (id),
    position  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    email     TEXT    NOT NULL,
    mobile    TEXT    NOT NULL
);
CREATE INDEX it_contacts_org ON it_contacts (org_id, position);

CREATE TABLE accounts (
    id                    INTEGER PRIMARY KEY,
    org_id                INTEGER NOT NULL REFERENCES organisations (id),
    email                 TEXT    NOT NULL UNIQUE,
    display_name          TEXT    NOT NULL,
    role                  TEXT    NOT NULL CHECK (role IN ('operator_admin', 'operator_staff', 'provider_admin', 'provider_user')),
    active                INTEGER NOT NULL DEFAULT 1,
    must_change_password  INTEGER NOT NULL DEFAULT 1,
    password_hash         TEXT    NOT NULL,
    totp_secret           TEXT,
    totp_last_step        INTEGER,
    last_login_at         TEXT,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);
CREATE INDEX accounts_org ON accounts (org_id, id);

-- Failed logins per e-mail address (as a hash), known or not, so that throttling and lockout
-- behave the same for addresses with and without an account.
CREATE TABLE login_throttle (
    key           TEXT    PRIMARY KEY,
    failures      INTEGER NOT NULL,
    locked_until  TEXT,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);

-- Facts about this installation, such as whether it holds demo data.
CREATE TABLE installation (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('session', 'api_token')),
    name          TEXT,
    token_hash    TEXT    NOT NULL UNIQUE,
    created_at    TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX sessions_account ON sessions (account_id, kind);

CREATE TABLE device_models (
    id                 INTEGER PRIMARY KEY,
    platform           TEXT    NOT NULL CHECK (platform IN ('android', 'ios')),
    name               TEXT    NOT NULL,
    recommended_since  TEXT,
    created_at         TEXT    NOT NULL,
    UNIQUE (platform, name)
);

CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    serial         TEXT    NOT NULL UNIQUE,
    imei           TEXT    NOT NULL UNIQUE,
    imei_tail      TEXT    NOT NULL,
    model_id       INTEGER NOT NULL REFERENCES device_models (id),
    platform       TEXT    NOT NULL CHECK (platform IN ('android', 'ios')),
    status         TEXT    NOT NULL DEFAULT 'in_stock',
    provider_id    INTEGER REFERENCES organisations (id),
    purchase_date  TEXT,
    warranty_end   TEXT,
    supplier       TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
-- The inventory list's filters, each an ordered range scan by id for cursor paging.
CREATE INDEX devices_provider ON devices (provider_id, id);
CREATE INDEX devices_provider_status ON devices (provider_id, status, id);
CREATE INDEX devices_provider_platform ON devices (provider_id, platform, id);
CREATE INDEX devices_status ON devices (status, id);
CREATE INDEX devices_platform ON devices (platform, id);
CREATE INDEX devices_model ON devices (model_id, id);
CREATE INDEX devices_imei_tail ON devices (imei_tail);

CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY,
    at            TEXT    NOT NULL,
    actor_id      INTEGER,
    actor_label   TEXT    NOT NULL,
    org_id        INTEGER,
    source        TEXT,
    action        TEXT    NOT NULL,
    target_kind   TEXT,
    target_id     TEXT,
    outcome       TEXT    NOT NULL,
    details       TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, seq);

-- The chain head: its row lock serialises appends, and it catches a truncated tail.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only: the server never changes or deletes an audit entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
