-- The revocation list reads revoked certificates only. An index over every certificate's
-- revoked_at also offered PostgreSQL a way to find the live ones: with statistics taken while
-- the table was small it chose that index for the check-in's certificate lookup and then read
-- every certificate on each request. Indexing only the revoked rows leaves the lookup one way,
-- by fingerprint.
DROP INDEX device_identities_revoked;
CREATE INDEX device_identities_revoked ON device_identities (revoked_at) WHERE revoked_at IS NOT NULL;
