-- From DeviceInformation's IsSupervised; unknown (NULL) until the phone answers. Lost mode needs
-- supervision: an unsupervised phone gets a lock with the same message and number instead.
ALTER TABLE apple_devices ADD COLUMN supervised BOOLEAN;
-- When APNs last took a push for the phone (a silent phone is woken once per period).
ALTER TABLE apple_devices ADD COLUMN pushed_at TEXT;
-- APNs said the push token is no longer valid (410 Unregistered, BadDeviceToken): the phone
-- cannot be woken until it sends a new token.
ALTER TABLE apple_devices ADD COLUMN push_dead_at TEXT;
ALTER TABLE apple_devices ADD COLUMN push_dead_reason TEXT;
-- How the phone's last wipe went out on its transport: `return_to_service` (an iPhone that
-- enrolls again by itself) or `erase_only` (an older iPhone, enrolled again by hand).
ALTER TABLE devices ADD COLUMN wipe_delivered_as TEXT;
