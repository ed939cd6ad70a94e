-- Planned maintenance, disruptions, their notices and the outbox that delivers them.
-- Every scheduled send is a row here (notices), expanded when due into one outbox row per
-- recipient and channel (deliveries); nodes claim outbox rows with leases.

CREATE TABLE notice_policies (
    org_id      INTEGER     PRIMARY KEY REFERENCES organisations (id),
    policy      TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL
);

CREATE TABLE maintenance_series (
    id                 INTEGER PRIMARY KEY,
    title              TEXT        NOT NULL,
    description        TEXT        NOT NULL,
    systems            TEXT        NOT NULL,
    all_providers      INTEGER     NOT NULL,
    cron               TEXT        NOT NULL,
    duration_minutes   INTEGER     NOT NULL,
    outside_preferred  INTEGER     NOT NULL,
    next_start_at      TEXT       ,
    cancelled_at       TEXT       ,
    created_by         INTEGER     REFERENCES accounts (id),
    created_at         TEXT        NOT NULL,
    updated_at         TEXT        NOT NULL
);
CREATE INDEX maintenance_series_next ON maintenance_series (next_start_at) WHERE cancelled_at IS NULL;

CREATE TABLE maintenance_series_targets (
    series_id    INTEGER NOT NULL REFERENCES maintenance_series (id),
    provider_id  INTEGER NOT NULL REFERENCES organisations (id),
    PRIMARY KEY (series_id, provider_id)
);

CREATE TABLE maintenance_windows (
    id                 INTEGER PRIMARY KEY,
    kind               TEXT        NOT NULL CHECK (kind IN ('planned', 'disruption')),
    series_id          INTEGER     REFERENCES maintenance_series (id),
    title              TEXT        NOT NULL,
    description        TEXT        NOT NULL,
    systems            TEXT        NOT NULL,
    all_providers      INTEGER     NOT NULL,
    starts_at          TEXT        NOT NULL,
    ends_at            TEXT       ,
    outside_preferred  INTEGER     NOT NULL,
    revision           INTEGER     NOT NULL DEFAULT 0,
    rescheduled_at     TEXT       ,
    cancelled_at       TEXT       ,
    closed_at          TEXT       ,
    created_by         INTEGER     REFERENCES accounts (id),
    created_at         TEXT        NOT NULL,
    updated_at         TEXT        NOT NULL,
    -- One window per occurrence of a series, however many nodes materialise it.
    UNIQUE (series_id, starts_at)
);
CREATE INDEX maintenance_windows_starts ON maintenance_windows (starts_at);

CREATE TABLE maintenance_targets (
    window_id    INTEGER NOT NULL REFERENCES maintenance_windows (id),
    provider_id  INTEGER NOT NULL REFERENCES organisations (id),
    PRIMARY KEY (window_id, provider_id)
);
CREATE INDEX maintenance_targets_provider ON maintenance_targets (provider_id, window_id);

CREATE TABLE notices (
    id           INTEGER PRIMARY KEY,
    window_id    INTEGER     NOT NULL REFERENCES maintenance_windows (id),
    kind         TEXT        NOT NULL,
    message      TEXT,
    due_at       TEXT        NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('scheduled', 'expanded', 'void')),
    expanded_at  TEXT       ,
    late         INTEGER     NOT NULL DEFAULT 0,
    created_at   TEXT        NOT NULL
);
CREATE INDEX notices_due ON notices (due_at) WHERE state = 'scheduled';
CREATE INDEX notices_window ON notices (window_id, id);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    notice_id        INTEGER     NOT NULL REFERENCES notices (id),
    idempotency_key  TEXT        NOT NULL UNIQUE,
    channel          TEXT        NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    recipient        TEXT        NOT NULL,
    provider_id      INTEGER     REFERENCES organisations (id),
    subject          TEXT        NOT NULL,
    body             TEXT        NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TEXT        NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT       ,
    last_error       TEXT,
    sent_at          TEXT       ,
    late             INTEGER     NOT NULL DEFAULT 0,
    created_at       TEXT        NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_notice ON deliveries (notice_id, id);
CREATE INDEX deliveries_dead ON deliveries (id) WHERE state = 'dead';

CREATE TABLE delivery_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER     NOT NULL REFERENCES deliveries (id),
    attempted_at  TEXT        NOT NULL,
    node          TEXT        NOT NULL,
    outcome       TEXT        NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error         TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

CREATE TABLE notice_acknowledgements (
    window_id        INTEGER     NOT NULL REFERENCES maintenance_windows (id),
    account_id       INTEGER     NOT NULL REFERENCES accounts (id),
    provider_id      INTEGER     NOT NULL REFERENCES organisations (id),
    acknowledged_at  TEXT        NOT NULL,
    PRIMARY KEY (window_id, account_id)
);

CREATE TABLE calendar_feeds (
    provider_id  INTEGER     PRIMARY KEY REFERENCES organisations (id),
    token_hash   TEXT        NOT NULL UNIQUE,
    created_at   TEXT        NOT NULL
);
