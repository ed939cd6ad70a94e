-- A phone's last check-in time in a narrow table of its own. Most check-ins change nothing but
-- this time; rewriting the whole device row (reported facts included) for it made every
-- check-in of a large fleet a wide write.
CREATE TABLE device_checkins (
    device_id  INTEGER PRIMARY KEY REFERENCES devices (id),
    at         TEXT NOT NULL
);
INSERT INTO device_checkins (device_id, at)
SELECT id, last_checkin_at FROM devices WHERE last_checkin_at IS NOT NULL;
ALTER TABLE devices DROP COLUMN last_checkin_at;
