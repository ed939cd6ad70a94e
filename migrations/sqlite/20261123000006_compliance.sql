-- Compliance as evaluated at check-in: each phone's current status with its reasons and since
-- when, and every change of it. A phone non-compliant for longer than the grace period is
-- reported to its provider once (alerted_at), until its status changes.

CREATE TABLE device_compliance (
    device_id     INTEGER PRIMARY KEY REFERENCES devices (id),
    status        TEXT    NOT NULL CHECK (status IN ('compliant', 'non_compliant')),
    -- JSON: [{"code": ..., "message": ...}]
    reasons       TEXT    NOT NULL,
    since         TEXT    NOT NULL,
    evaluated_at  TEXT    NOT NULL,
    alerted_at    TEXT
);
CREATE INDEX device_compliance_overdue ON device_compliance (since)
    WHERE status = 'non_compliant' AND alerted_at IS NULL;

CREATE TABLE compliance_history (
    id         INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices (id),
    at         TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    reasons    TEXT    NOT NULL
);
CREATE INDEX compliance_history_device ON compliance_history (device_id, id);

-- The outbox carries compliance alerts as well as notices: a delivery belongs to a notice or,
-- for an alert, to a phone. SQLite cannot drop a NOT NULL, so the two outbox tables are rebuilt
-- (children first, so that no foreign key points at a dropped table).
CREATE TABLE deliveries_new (
    id               INTEGER PRIMARY KEY,
    topic            TEXT        NOT NULL DEFAULT 'notice' CHECK (topic IN ('notice', 'compliance')),
    notice_id        INTEGER     REFERENCES notices (id),
    device_id        INTEGER     REFERENCES devices (id),
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
    created_at       TEXT        NOT NULL,
    CHECK ((topic = 'notice') = (notice_id IS NOT NULL))
);
INSERT INTO deliveries_new (id, topic, notice_id, idempotency_key, channel, recipient, provider_id,
    subject, body, state, attempts, next_attempt_at, lease_owner, lease_until, last_error, sent_at,
    late, created_at)
SELECT id, 'notice', notice_id, idempotency_key, channel, recipient, provider_id, subject, body,
    state, attempts, next_attempt_at, lease_owner, lease_until, last_error, sent_at, late, created_at
FROM deliveries;

CREATE TABLE delivery_attempts_new (
    id            INTEGER PRIMARY KEY,
    delivery_id   INTEGER     NOT NULL REFERENCES deliveries_new (id),
    attempted_at  TEXT        NOT NULL,
    node          TEXT        NOT NULL,
    outcome       TEXT        NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error         TEXT
);
INSERT INTO delivery_attempts_new (id, delivery_id, attempted_at, node, outcome, error)
SELECT id, delivery_id, attempted_at, node, outcome, error FROM delivery_attempts;

DROP TABLE delivery_attempts;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
ALTER TABLE delivery_attempts_new RENAME TO delivery_attempts;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_notice ON deliveries (notice_id, id);
CREATE INDEX deliveries_dead ON deliveries (id) WHERE state = 'dead';
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
