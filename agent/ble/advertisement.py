"""Our own org.bluez.LEAdvertisement1: a broadcast advert with one 16-bit service UUID and its data.

bluez-peripheral cannot express this (wrong ServiceData signature, forced Appearance), and anything that
adds AD bytes (Appearance, LocalName, Includes) would push our 31-byte payload over the legacy limit, so
the object exposes exactly Type, ServiceUUIDs and ServiceData. BlueZ reads the properties with GetAll
when we register, which is why rotating means unregister → change → register.
"""

import logging
from collections.abc import Callable
from typing import Annotated

from dbus_fast import PropertyAccess, Variant
from dbus_fast.annotations import DBusDict, DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from agent.ble.bluez import ADVERTISEMENT
from agent.schemes.base import uuid128

log = logging.getLogger(__name__)
DBusStrList = Annotated[list[str], DBusSignature("as")]


class Advertisement(ServiceInterface):
    def __init__(self, on_release: Callable[[], None]) -> None:
        super().__init__(ADVERTISEMENT)
        self._uuid = ""
        self._data = b""
        self._on_release = on_release

    def set_payload(self, uuid16: int, service_data: bytes) -> None:
        self._uuid = uuid128(uuid16)
        self._data = bytes(service_data)

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:
        return "broadcast"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> DBusStrList:
        return [self._uuid]

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:
        return {self._uuid: Variant("ay", self._data)}

    @dbus_method()
    def Release(self) -> None:
        log.info("BlueZ released our advertisement")
        self._on_release()
