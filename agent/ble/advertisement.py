"""Our ``org.bluez.LEAdvertisement1`` object: a broadcast with one 16-bit service UUID and its service data.

Nothing else that adds AD bytes (no LocalName, no Appearance), so a 20-byte payload stays within the
legacy 31 bytes; ``Includes=["tx-power"]`` is opt-in because it adds three bytes and puts the TX power in
clear text next to an ID whose metadata encrypts it (a fingerprint the GAEN and DP-3T designs avoid).
``ServiceData`` is ``a{sv}`` of ``ay`` — the signature bluetoothd parses (bluez-peripheral 0.1.7 gets it
wrong, exports Appearance unconditionally and cannot unregister, which is why this exists).
"""

from collections.abc import Callable
from typing import Annotated

from dbus_fast import PropertyAccess, Variant
from dbus_fast.annotations import DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from agent.ble.names import ADVERTISEMENT1
from agent.schemes.base import uuid128

StrList = Annotated[list[str], DBusSignature("as")]
ServiceDataDict = Annotated[dict[str, Variant], DBusSignature("a{sv}")]


class Advertisement(ServiceInterface):
    """The advert's content lives here between registrations; BlueZ reads it with GetAll on Register."""

    def __init__(self, on_release: Callable[[], None], include_tx_power: bool = False) -> None:
        super().__init__(ADVERTISEMENT1)
        self._on_release = on_release
        self._include_tx_power = include_tx_power
        self._uuid = ""
        self._data = b""

    def set_content(self, uuid16: int, service_data: bytes) -> None:
        """Only while unregistered: a change in place would put the new ID under the old address."""
        self._uuid = uuid128(uuid16)
        self._data = bytes(service_data)

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "broadcast"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> StrList:
        return [self._uuid]

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> ServiceDataDict:
        return {self._uuid: Variant("ay", self._data)}

    @dbus_property(access=PropertyAccess.READ)
    def Includes(self) -> StrList:
        return ["tx-power"] if self._include_tx_power else []

    @dbus_method()
    def Release(self) -> None:
        self._on_release()
