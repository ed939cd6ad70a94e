-- Leasing operations: leases and holders with their history, phone requests with working-day
-- deadlines, wipe evidence for the wipe-before-reassign rule, four-eyes manual wipes, lost and
-- stolen cases with their timelines, and SIM subscriptions with the history of which phone held
-- which SIM. Command ids are kept without foreign keys, because finished commands are pruned.

-- What the wipe-before-reassign rule reads, kept on the phone's row: when its last assignment
-- (a lease or a holder) ended, when a wipe was last queued for it, and when two operator admins
-- recorded a wipe by hand. `wiped_at` (the acknowledged wipe) and `enrolled_at` exist already.
ALTER TABLE devices ADD COLUMN holder_id INTEGER REFERENCES accounts (id);
ALTER TABLE devices ADD COLUMN assignment_ended_at TEXT;
ALTER TABLE devices ADD COLUMN wipe_sent_at TEXT;
ALTER TABLE devices ADD COLUMN marked_wiped_at TEXT;
-- An ICCID the phone reported that is not its recorded SIM's, for the operator to look at.
ALTER TABLE devices ADD COLUMN iccid_mismatch TEXT;
ALTER TABLE devices ADD COLUMN iccid_mismatch_at TEXT;
CREATE INDEX devices_holder ON devices (holder_id) WHERE holder_id IS NOT NULL;
CREATE INDEX devices_iccid_mismatch ON devices (id) WHERE iccid_mismatch IS NOT NULL;

CREATE TABLE phone_requests (
    id                 INTEGER PRIMARY KEY,
    provider_id        INTEGER  NOT NULL REFERENCES organisations (id),
    quantity           INTEGER  NOT NULL CHECK (quantity > 0),
    fulfilled          INTEGER  NOT NULL DEFAULT 0,
    model_id           INTEGER  REFERENCES device_models (id),
    needed_by          TEXT,
    delivery_note      TEXT    NOT NULL DEFAULT '',
    -- A replacement for a written-off phone: its lease's terms carry over.
    replaces_lease_id  INTEGER,
    state              TEXT    NOT NULL CHECK (state IN ('open', 'fulfilled', 'cancelled')),
    created_by         INTEGER  REFERENCES accounts (id),
    created_at         TEXT NOT NULL,
    due_at             TEXT NOT NULL,
    closed_at          TEXT
);
CREATE INDEX phone_requests_provider ON phone_requests (provider_id, id);
CREATE INDEX phone_requests_open ON phone_requests (due_at) WHERE state = 'open';

CREATE TABLE leases (
    id                 INTEGER PRIMARY KEY,
    device_id          INTEGER  NOT NULL REFERENCES devices (id),
    provider_id        INTEGER  NOT NULL REFERENCES organisations (id),
    starts_on          TEXT    NOT NULL,
    ends_on            TEXT,
    monthly_price_ore  INTEGER  NOT NULL,
    data_gb            INTEGER  NOT NULL,
    request_id         INTEGER  REFERENCES phone_requests (id),
    replaces_lease_id  INTEGER  REFERENCES leases (id),
    created_by         INTEGER  REFERENCES accounts (id),
    created_at         TEXT NOT NULL,
    ended_at           TEXT,
    end_reason         TEXT    CHECK (end_reason IN ('returned', 'contract_ended', 'written_off', 'swapped'))
);
CREATE UNIQUE INDEX leases_one_open ON leases (device_id) WHERE ended_at IS NULL;
CREATE INDEX leases_device ON leases (device_id, id);
CREATE INDEX leases_provider_open ON leases (provider_id, id) WHERE ended_at IS NULL;
-- The reminder lists: leases and warranties ending soon.
CREATE INDEX leases_ending ON leases (ends_on) WHERE ended_at IS NULL;
CREATE INDEX devices_warranty_end ON devices (warranty_end) WHERE warranty_end IS NOT NULL;

-- Who held a phone, when: a holder is a provider user; a phone without one is in the pool.
CREATE TABLE holder_periods (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER  NOT NULL REFERENCES devices (id),
    lease_id    INTEGER  NOT NULL REFERENCES leases (id),
    account_id  INTEGER  NOT NULL REFERENCES accounts (id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT
);
CREATE INDEX holder_periods_device ON holder_periods (device_id, id);

-- A wipe by hand (the phone is dead or broken): recorded by one operator admin with a reason,
-- confirmed by another.
CREATE TABLE manual_wipes (
    id            INTEGER PRIMARY KEY,
    device_id     INTEGER  NOT NULL REFERENCES devices (id),
    reason        TEXT    NOT NULL,
    recorded_by   INTEGER  NOT NULL REFERENCES accounts (id),
    recorded_at   TEXT NOT NULL,
    confirmed_by  INTEGER  REFERENCES accounts (id),
    confirmed_at  TEXT
);
CREATE UNIQUE INDEX manual_wipes_one_pending ON manual_wipes (device_id) WHERE confirmed_at IS NULL;

CREATE TABLE sims (
    id                         INTEGER PRIMARY KEY,
    iccid                      TEXT    NOT NULL UNIQUE,
    phone_number               TEXT    NOT NULL UNIQUE,
    carrier                    TEXT    NOT NULL,
    plan                       TEXT    NOT NULL,
    data_gb                    INTEGER  NOT NULL,
    status                     TEXT    NOT NULL CHECK (status IN ('active', 'block_requested', 'blocked', 'terminated')),
    device_id                  INTEGER  REFERENCES devices (id),
    reactivation_requested_at  TEXT,
    -- The month (YYYY-MM) and the highest share of the plan (80 or 100) already reported.
    data_alert_month           TEXT,
    data_alert_percent         INTEGER,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);
CREATE UNIQUE INDEX sims_one_per_device ON sims (device_id) WHERE device_id IS NOT NULL;

CREATE TABLE sim_periods (
    id          INTEGER PRIMARY KEY,
    sim_id      INTEGER  NOT NULL REFERENCES sims (id),
    device_id   INTEGER  NOT NULL REFERENCES devices (id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT
);
CREATE INDEX sim_periods_sim ON sim_periods (sim_id, id);
CREATE INDEX sim_periods_device ON sim_periods (device_id, id);

CREATE TABLE lost_cases (
    id                      INTEGER PRIMARY KEY,
    device_id               INTEGER  NOT NULL REFERENCES devices (id),
    provider_id             INTEGER  REFERENCES organisations (id),
    kind                    TEXT    NOT NULL CHECK (kind IN ('lost', 'stolen')),
    discovered_at           TEXT NOT NULL,
    reported_at             TEXT NOT NULL,
    reported_by             INTEGER  REFERENCES accounts (id),
    circumstances           TEXT    NOT NULL,
    police_report           TEXT,
    late                    INTEGER NOT NULL,
    state                   TEXT    NOT NULL CHECK (state IN ('open', 'found', 'written_off')),
    -- The status the phone had before it was lost, to go back to when it is found.
    status_before           TEXT    NOT NULL,
    lock_command_id         INTEGER,
    wipe_command_id         INTEGER,
    replacement_request_id  INTEGER  REFERENCES phone_requests (id),
    resolved_at             TEXT,
    resolved_by             INTEGER  REFERENCES accounts (id)
);
CREATE UNIQUE INDEX lost_cases_one_open ON lost_cases (device_id) WHERE state = 'open';
CREATE INDEX lost_cases_provider ON lost_cases (provider_id, id);
CREATE INDEX lost_cases_open ON lost_cases (reported_at) WHERE state = 'open';

CREATE TABLE lost_case_events (
    id        INTEGER PRIMARY KEY,
    case_id   INTEGER  NOT NULL REFERENCES lost_cases (id),
    at        TEXT NOT NULL,
    kind      TEXT    NOT NULL,
    actor_id  INTEGER  REFERENCES accounts (id),
    -- JSON
    details   TEXT    NOT NULL
);
CREATE INDEX lost_case_events_case ON lost_case_events (case_id, id);

-- Warranty cases: a fault, the supplier's answer, and the swap to a replacement phone.
CREATE TABLE warranty_cases (
    id                     INTEGER PRIMARY KEY,
    device_id              INTEGER  NOT NULL REFERENCES devices (id),
    fault                  TEXT    NOT NULL,
    -- Whether the phone's warranty covered the day the case was opened.
    under_warranty         INTEGER NOT NULL,
    state                  TEXT    NOT NULL CHECK (state IN ('opened', 'sent_to_supplier', 'repaired', 'replaced', 'rejected', 'closed')),
    supplier_reference     TEXT,
    -- The status the phone had when it left for the supplier, to go back to.
    status_before          TEXT,
    replacement_device_id  INTEGER  REFERENCES devices (id),
    opened_by              INTEGER  REFERENCES accounts (id),
    opened_at              TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    closed_at              TEXT
);
CREATE UNIQUE INDEX warranty_cases_one_open ON warranty_cases (device_id) WHERE state <> 'closed';
CREATE INDEX warranty_cases_state ON warranty_cases (state, id);

CREATE TABLE warranty_events (
    id          INTEGER PRIMARY KEY,
    case_id     INTEGER  NOT NULL REFERENCES warranty_cases (id),
    at          TEXT NOT NULL,
    actor_id    INTEGER  REFERENCES accounts (id),
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    note        TEXT
);
CREATE INDEX warranty_events_case ON warranty_events (case_id, id);

-- The outbox's topics are checked in the code (domain::outbox::Topic), so a new kind of message
-- needs no table rebuild. SQLite cannot drop a CHECK, so the two outbox tables are rebuilt
-- (children first, so that no foreign key points at a dropped table).
CREATE TABLE deliveries_new (
    id               INTEGER PRIMARY KEY,
    topic            TEXT        NOT NULL DEFAULT 'notice',
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
INSERT INTO deliveries_new (id, topic, notice_id, device_id, idempotency_key, channel, recipient,
    provider_id, subject, body, state, attempts, next_attempt_at, lease_owner, lease_until,
    last_error, sent_at, late, created_at)
SELECT id, topic, notice_id, device_id, idempotency_key, channel, recipient, provider_id, subject,
    body, state, attempts, next_attempt_at, lease_owner, lease_until, last_error, sent_at, late,
    created_at
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
