-- iPhones through Apple's MDM protocol: which way a token enrolls a phone, the certificates SCEP
-- issued that wait for the phone's first check-in, and what each enrolled iPhone told us.

ALTER TABLE enrollment_tokens ADD COLUMN channel TEXT NOT NULL DEFAULT 'agent';

-- A certificate SCEP issued against a token: the phone's Authenticate message, signed with it,
-- ties it to the device record (a pool token does not name one) and makes it a device identity.
CREATE TABLE apple_pending_enrollments (
    fingerprint         TEXT        PRIMARY KEY,
    certificate_serial  TEXT        NOT NULL,
    token_id            BIGINT      NOT NULL REFERENCES enrollment_tokens (id),
    key_kind            TEXT        NOT NULL,
    not_before          TIMESTAMPTZ NOT NULL,
    not_after           TIMESTAMPTZ NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);

-- The push token, PushMagic and topic come with TokenUpdate. The UnlockToken is not kept: the
-- product never clears a passcode remotely, it wipes.
CREATE TABLE apple_devices (
    device_id         BIGINT      PRIMARY KEY REFERENCES devices (id),
    udid              TEXT        NOT NULL UNIQUE,
    topic             TEXT,
    push_token        TEXT,
    push_magic        TEXT,
    enrolled_at       TIMESTAMPTZ NOT NULL,
    token_updated_at  TIMESTAMPTZ,
    checked_out_at    TIMESTAMPTZ
);
