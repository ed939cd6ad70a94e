-- The standard phone: policy layers (operator default, provider and device overrides) and the
-- app catalogue they name.

CREATE TABLE policy_layers (
    scope       TEXT        NOT NULL CHECK (scope IN ('operator', 'provider', 'device')),
    scope_id    INTEGER     NOT NULL,
    layer       TEXT        NOT NULL,
    updated_at  TEXT        NOT NULL,
    PRIMARY KEY (scope, scope_id)
);

CREATE TABLE apps (
    key              TEXT        PRIMARY KEY,
    name             TEXT        NOT NULL,
    android_package  TEXT,
    ios_bundle_id    TEXT,
    app_store_id     INTEGER,
    -- Licensed per provider: this many phones of each provider are included, more are billed.
    included_licences INTEGER,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL
);
