-- A phone's last check-in time in a narrow table of its own. Most check-ins change nothing but
-- this time; rewriting the whole device row (reported facts included) for it made every
-- check-in of a large fleet a wide write. Room is left on each page so that the new version of
-- a row can stay on its page (a heap-only update, which touches no index).
CREATE TABLE device_checkins (
    device_id  BIGINT PRIMARY KEY REFERENCES devices (id),
    at         TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 70);
INSERT INTO device_checkins (device_id, at)
SELECT id, last_checkin_at FROM devices WHERE last_checkin_at IS NOT NULL;
ALTER TABLE devices DROP COLUMN last_checkin_at;
