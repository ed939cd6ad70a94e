-- The command queue: what municipal IT asks a phone to do (lock, wipe, lost mode, install or
-- remove an app, refresh, restart), in per-device order by priority, and what came of it.
-- A fan-out to a provider's phones is one batch row and one command row per phone.

CREATE TABLE command_batches (
    id            INTEGER PRIMARY KEY,
    provider_id   INTEGER NOT NULL REFERENCES organisations (id),
    kind          TEXT    NOT NULL,
    queued        INTEGER NOT NULL,
    created_by    INTEGER REFERENCES accounts (id),
    created_at    TEXT    NOT NULL
);

CREATE TABLE commands (
    id            INTEGER PRIMARY KEY,
    device_id     INTEGER NOT NULL REFERENCES devices (id),
    batch_id      INTEGER REFERENCES command_batches (id),
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    priority      INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'acknowledged', 'error', 'not_now', 'expired', 'cancelled')),
    created_by    INTEGER REFERENCES accounts (id),
    created_at    TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL,
    -- When the command may go to the phone (again): a sent command without a result and a
    -- not-now answer wait until then.
    available_at  TEXT    NOT NULL,
    sent_at       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    finished_at   TEXT,
    -- The device's error text, or why the command was cancelled.
    result        TEXT
);
CREATE INDEX commands_pending ON commands (device_id, priority DESC, id)
    WHERE state IN ('queued', 'sent', 'not_now');
CREATE INDEX commands_device ON commands (device_id, id);
CREATE INDEX commands_expiry ON commands (expires_at) WHERE state IN ('queued', 'sent', 'not_now');
CREATE INDEX commands_finished ON commands (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX commands_batch ON commands (batch_id) WHERE batch_id IS NOT NULL;

ALTER TABLE devices ADD COLUMN wiped_at TEXT;
