"""The BLE edge: our LEAdvertisement1 on dbus-fast, bleak scanners, and recovery when BlueZ comes and goes."""
