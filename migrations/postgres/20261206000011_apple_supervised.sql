-- From DeviceInformation's IsSupervised; unknown (NULL) until the phone answers. Lost mode needs
-- supervision: an unsupervised phone gets a lock with the same message and number instead.
ALTER TABLE apple_devices ADD COLUMN supervised BOOLEAN;
