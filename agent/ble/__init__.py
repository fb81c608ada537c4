"""The BLE edge on BlueZ: our own LEAdvertisement1 with ID/address rotation, bleak scanners, recovery."""
