-- Device identity: enrollment tokens, issued device certificates, and what devices report.

CREATE TABLE enrollment_tokens (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT    NOT NULL UNIQUE,
    device_id    INTEGER REFERENCES devices (id),
    provider_id  INTEGER REFERENCES organisations (id),
    created_by   INTEGER REFERENCES accounts (id),
    created_at   TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    used_at      TEXT,
    used_by      INTEGER REFERENCES devices (id),
    CHECK ((device_id IS NULL) <> (provider_id IS NULL))
);
CREATE INDEX enrollment_tokens_created ON enrollment_tokens (created_at);

CREATE TABLE device_identities (
    serial         TEXT    PRIMARY KEY,
    device_id      INTEGER NOT NULL REFERENCES devices (id),
    fingerprint    TEXT    NOT NULL UNIQUE,
    key_kind       TEXT    NOT NULL,
    not_before     TEXT    NOT NULL,
    not_after      TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    revoked_at     TEXT,
    revoke_reason  TEXT
);
CREATE INDEX device_identities_device ON device_identities (device_id, created_at);
CREATE INDEX device_identities_revoked ON device_identities (revoked_at);

ALTER TABLE devices ADD COLUMN enrolled_at TEXT;
ALTER TABLE devices ADD COLUMN last_checkin_at TEXT;
-- The last facts the device reported, as JSON, and their hash: unchanged facts are not rewritten.
ALTER TABLE devices ADD COLUMN facts TEXT;
ALTER TABLE devices ADD COLUMN facts_hash TEXT;
