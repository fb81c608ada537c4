"""Which adapters to use, and the one adapter setting the agent ever changes (Powered, to recover).

``choose_adapters`` is pure: given the configured names (or "auto") and what BlueZ has, it picks an
advertising adapter and the scanning ones, preferring to scan on a different controller than the one that
advertises when there are two, so rotations never have to pause scanning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.ble.names import ADAPTER1, ADAPTER_PREFIX, BLUEZ, E_DBUS_FAILED, PROPERTIES, SET

NO_ADVERTISING = frozenset({"", "none", "off"})
_INDEX = re.compile(r"(\d+)$")


class NoAdapter(LookupError):
    pass


def _order(name: str) -> tuple[int, str]:
    m = _INDEX.search(name)
    return (int(m.group(1)) if m else 1 << 30, name)


def choose_adapters(
    advertise: str | None, scan: Sequence[str], available: Iterable[str]
) -> tuple[str | None, tuple[str, ...]]:
    """(advertising adapter or None, scanning adapters) for the configured values and present adapters."""
    present = sorted(set(available), key=_order)
    adv: str | None = None if advertise is None or advertise.lower() in NO_ADVERTISING else advertise
    if adv == "auto":
        if not present:
            raise NoAdapter("no Bluetooth adapter to advertise on")
        adv = present[0]
    scans: list[str] = []
    for name in scan:
        if name != "auto":
            scans.append(name)
            continue
        others = [a for a in present if a != adv]
        if others:
            scans.extend(others)
        elif present:
            scans.append(present[0])
        else:
            raise NoAdapter("no Bluetooth adapter to scan on")
    return adv, tuple(dict.fromkeys(scans))


async def set_powered(bus: MessageBus, adapter: str, on: bool) -> None:
    reply = await bus.call(
        Message(
            destination=BLUEZ,
            path=f"{ADAPTER_PREFIX}{adapter}",
            interface=PROPERTIES,
            member=SET,
            signature="ssv",
            body=[ADAPTER1, "Powered", Variant("b", on)],
        )
    )
    if reply.message_type is MessageType.ERROR:
        raise DBusError(reply.error_name or E_DBUS_FAILED, str(reply.body[:1]), reply)
