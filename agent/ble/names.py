"""Every BlueZ and D-Bus name the agent, the simulated BlueZ and the doctor speak, in one place.

The agent, ``agent.sim`` (which must answer exactly what the agent asks) and ``agent.doctor`` all talk to
``org.bluez`` over D-Bus. A name spelled in two places can drift apart silently: a typo on one side turns a
real BlueZ error into "unknown" or makes the simulator answer a method the real daemon does not have. So the
bus, interface, method, signal and error names live here, grouped by what they name, and nowhere else.
Names come from BlueZ's ``doc/*.rst`` API descriptions and the D-Bus specification.
"""

from __future__ import annotations

# The well-known bus names, and the bus daemon's own object.
BLUEZ = "org.bluez"
BUS_DAEMON = "org.freedesktop.DBus"
BUS_DAEMON_PATH = "/org/freedesktop/DBus"

# Standard D-Bus interfaces.
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"

# BlueZ interfaces.
ADAPTER1 = "org.bluez.Adapter1"
DEVICE1 = "org.bluez.Device1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT1 = "org.bluez.LEAdvertisement1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR1 = "org.bluez.AdvertisementMonitor1"

# Object paths: BlueZ's adapters live under /org/bluez (hci0 is /org/bluez/hci0).
ADAPTER_PREFIX = "/org/bluez/"

# Methods of the standard interfaces.
GET = "Get"
GET_ALL = "GetAll"
SET = "Set"
GET_MANAGED_OBJECTS = "GetManagedObjects"
ADD_MATCH = "AddMatch"
REMOVE_MATCH = "RemoveMatch"
GET_NAME_OWNER = "GetNameOwner"

# Methods of the BlueZ interfaces.
SET_DISCOVERY_FILTER = "SetDiscoveryFilter"
START_DISCOVERY = "StartDiscovery"
REMOVE_DEVICE = "RemoveDevice"
STOP_DISCOVERY = "StopDiscovery"
REGISTER_ADVERTISEMENT = "RegisterAdvertisement"
UNREGISTER_ADVERTISEMENT = "UnregisterAdvertisement"
REGISTER_MONITOR = "RegisterMonitor"
UNREGISTER_MONITOR = "UnregisterMonitor"
RELEASE = "Release"

# Properties the agent decides on (LEAdvertisingManager1's, as BlueZ's doc/org.bluez.LEAdvertisingManager.rst
# names them): SupportedInstances counts the instances still free, SupportedFeatures lists platform features.
SUPPORTED_INSTANCES = "SupportedInstances"
SUPPORTED_FEATURES = "SupportedFeatures"
# The SupportedFeatures entry for "multiple advertising offloaded to the controller": BlueZ (src/advertising.c)
# lists it when the kernel reports MGMT_ADV_FLAG_HW_OFFLOAD, which net/bluetooth/mgmt.c sets exactly when the
# controller is driven with extended advertising (one advertising set, with its own address, per instance).
# SupportedFeatures is experimental (bluetoothd --experimental only) before BlueZ 5.77 (commit 7e028287a,
# "Promote experimental properties to stable"), so bookworm's 5.66 hides it by default.
HARDWARE_OFFLOAD = "HardwareOffload"
CAN_SET_TX_POWER = "CanSetTxPower"  # set together with HardwareOffload; only the simulator speaks it
# The stable signal of the same kernel branch: BlueZ exposes SupportedSecondaryChannels only when the kernel
# reports MGMT_ADV_FLAG_SEC_1M ("1M PHY shall always be supported if ext_adv is supported"), which
# get_supported_adv_flags sets next to HW_OFFLOAD, for extended advertising only.
SUPPORTED_SECONDARY_CHANNELS = "SupportedSecondaryChannels"
SECONDARY_1M = "1M"
SECONDARY_2M = "2M"  # only the simulator speaks it

# Signals.
NAME_OWNER_CHANGED = "NameOwnerChanged"
INTERFACES_ADDED = "InterfacesAdded"
INTERFACES_REMOVED = "InterfacesRemoved"
PROPERTIES_CHANGED = "PropertiesChanged"

# BlueZ errors (org.bluez.Error.*).
E_FAILED = "org.bluez.Error.Failed"
E_BUSY = "org.bluez.Error.Busy"
E_IN_PROGRESS = "org.bluez.Error.InProgress"
E_NOT_READY = "org.bluez.Error.NotReady"
E_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
E_ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
E_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
E_INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
E_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
E_NOT_AUTHORIZED = "org.bluez.Error.NotAuthorized"

# D-Bus errors (org.freedesktop.DBus.Error.*) BlueZ calls end in.
E_DBUS_FAILED = "org.freedesktop.DBus.Error.Failed"
E_NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
E_TIMEOUT = "org.freedesktop.DBus.Error.Timeout"
E_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
E_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
E_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
E_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"
E_DISCONNECTED = "org.freedesktop.DBus.Error.Disconnected"
E_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
E_DBUS_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
E_PROPERTY_READ_ONLY = "org.freedesktop.DBus.Error.PropertyReadOnly"
