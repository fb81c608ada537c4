"""BOUNDARY (test support): a Silicon Labs CP2112 USB-to-GPIO bridge emulated in userspace through /dev/uhid.

The VM's Debian kernel has neither gpio-sim nor gpio-mockup, but it has uhid and the real hid-cp2112 driver.
This object is the *hardware* side only: it answers the HID feature reports the driver sends (AN495's
GPIO configuration, get and set reports, and the version / SMBus configuration / lock byte reports the
driver reads while probing). The driver then registers a real gpiochip, so the code under test goes through
the real character device, gpiolib and the real driver; only the chip's pins are this class: ``set_input``
is a wire pulled by a button, ``outputs`` what an LED on a pin would show.

Report layouts from Silicon Labs AN495 (CP2112 Interface Specification): 0x02 GPIO configuration
[id, direction (1 = output), push-pull, special function, clock divider]; 0x03 get [id, levels];
0x04 set [id, levels, mask]; 0x05 version [id, part number 0x0C, version]; 0x06 SMBus configuration
(14 bytes); 0x20 lock byte. The uhid event layout is the kernel's include/uapi/linux/uhid.h.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UHID_DESTROY = 1
UHID_GET_REPORT = 9
UHID_GET_REPORT_REPLY = 10
UHID_CREATE2 = 11
UHID_SET_REPORT = 13
UHID_SET_REPORT_REPLY = 14
UHID_FEATURE_REPORT = 0
UHID_DATA_MAX = 4096
HID_MAX_DESCRIPTOR_SIZE = 4096
EVENT_SIZE = 4 + 128 + 64 + 64 + 2 + 2 + 4 * 4 + HID_MAX_DESCRIPTOR_SIZE  # the union's largest member: create2
BUS_USB = 0x03
VENDOR_SILABS = 0x10C4
PRODUCT_CP2112 = 0xEA90
EIO = 5

GPIO_CONFIG, GPIO_GET, GPIO_SET, VERSION, SMBUS_CONFIG, LOCK_BYTE = 0x02, 0x03, 0x04, 0x05, 0x06, 0x20
_SIZES = {GPIO_CONFIG: 5, GPIO_GET: 2, GPIO_SET: 3, VERSION: 3, SMBUS_CONFIG: 14, LOCK_BYTE: 2}


def _descriptor() -> bytes:
    """A vendor-page HID descriptor declaring the feature reports above (hid_parse needs a valid one)."""
    out = bytearray(b"\x06\x00\xff\x09\x01\xa1\x01\x15\x00\x26\xff\x00\x75\x08")
    for rid, size in _SIZES.items():
        out += bytes([0x85, rid, 0x95, size - 1, 0x09, 0x01, 0xB1, 0x02])
    return bytes(out + b"\xc0")


@dataclass(frozen=True)
class Change:
    """The output pins' levels at ``at`` (time.monotonic()), after a set report changed one."""

    at: float
    levels: int


class Cp2112:
    """Create with ``Cp2112.plug()``; ``chip()`` waits for the driver's gpiochip and names its device."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.direction = 0  # bit set: output
        self.latch = 0xFF  # what the outputs drive
        self.inputs = 0xFF  # what the wires on the inputs read: the CP2112's weak pull-ups make idle pins high
        self.changes: list[Change] = []
        self.gets = 0
        self.trace: list[str] = []  # every request the driver sent, for a failing test's message
        self._thread = threading.Thread(target=self._serve, name="cp2112-uhid", daemon=True)
        self._thread.start()

    @classmethod
    def plug(cls, name: str = "proxitrace test CP2112") -> Cp2112:
        fd = os.open("/dev/uhid", os.O_RDWR)
        rd = _descriptor()
        body = struct.pack(
            "<128s64s64sHHIIII",
            name.encode(),
            b"cp2112-uhid",
            b"",
            len(rd),
            BUS_USB,
            VENDOR_SILABS,
            PRODUCT_CP2112,
            1,
            0,
        )
        event = struct.pack("<I", UHID_CREATE2) + body + rd
        os.write(fd, event.ljust(EVENT_SIZE, b"\0"))
        return cls(fd)

    def chip(self, timeout: float = 60.0) -> Path:
        """The /dev/gpiochipN the driver registered for this device (its sysfs parent is the HID device)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sysfs in sorted(Path("/sys/bus/gpio/devices").glob("gpiochip*")):
                node = Path("/dev") / sysfs.name
                if f"{VENDOR_SILABS:04X}:{PRODUCT_CP2112:04X}" in str(sysfs.resolve()) and node.exists():
                    return node
            time.sleep(0.2)
        raise TimeoutError("hid-cp2112 registered no gpiochip for the emulated device")

    def set_input(self, line: int, high: bool) -> None:
        with self._lock:
            self.inputs = self.inputs | (1 << line) if high else self.inputs & ~(1 << line)

    def output(self, line: int) -> bool | None:
        """The level the driver drives on ``line``, or None while it is not an output."""
        with self._lock:
            if not self.direction & (1 << line):
                return None
            return bool(self.latch & (1 << line))

    def history(self, line: int, since: float = 0.0) -> list[tuple[float, bool]]:
        """Each level ``line`` was driven to (after ``since``), de-duplicated, with when."""
        out: list[tuple[float, bool]] = []
        with self._lock:
            for c in self.changes:
                level = bool(c.levels & (1 << line))
                if c.at >= since and (not out or out[-1][1] != level):
                    out.append((c.at, level))
        return out

    def unplug(self) -> None:
        os.write(self._fd, struct.pack("<I", UHID_DESTROY).ljust(EVENT_SIZE, b"\0"))
        os.close(self._fd)

    # ---- the device side of the HID protocol ------------------------------------------------------

    def _serve(self) -> None:
        while True:
            try:
                event = os.read(self._fd, EVENT_SIZE)
            except OSError:
                return  # closed by unplug
            (kind,) = struct.unpack_from("<I", event)
            self.trace.append(f"event {kind} {event[4:16].hex()}")
            if kind == UHID_GET_REPORT:
                rid, rnum, rtype = struct.unpack_from("<IBB", event, 4)
                self._reply_get(rid, rnum if rtype == UHID_FEATURE_REPORT else -1)
            elif kind == UHID_SET_REPORT:
                rid, rnum, rtype, size = struct.unpack_from("<IBBH", event, 4)
                data = event[12 : 12 + size]
                ok = rtype == UHID_FEATURE_REPORT and self._set(rnum, data)
                reply = struct.pack("<IIH", UHID_SET_REPORT_REPLY, rid, 0 if ok else EIO)
                self._write(reply)

    def _write(self, event: bytes) -> None:
        try:
            os.write(self._fd, event.ljust(EVENT_SIZE, b"\0"))
        except OSError as exc:  # unplugged meanwhile
            self.trace.append(f"write {event[:4].hex()} failed: {exc}")
            return
        self.trace.append(f"reply {event[:20].hex()}")

    def _reply_get(self, rid: int, rnum: int) -> None:
        with self._lock:
            self.gets += 1
            data = {
                GPIO_CONFIG: bytes([GPIO_CONFIG, self.direction, 0xFF, 0, 0]),
                GPIO_GET: bytes([GPIO_GET, (self.latch & self.direction) | (self.inputs & ~self.direction & 0xFF)]),
                VERSION: bytes([VERSION, 0x0C, 0x02]),
                SMBUS_CONFIG: bytes([SMBUS_CONFIG]) + struct.pack(">IBBHHBH", 100_000, 0x02, 0, 0, 0, 0, 0),
                LOCK_BYTE: bytes([LOCK_BYTE, 0xFF]),
            }.get(rnum)
        if data is None:
            self._write(struct.pack("<IIHH", UHID_GET_REPORT_REPLY, rid, EIO, 0))
        else:
            self._write(struct.pack("<IIHH", UHID_GET_REPORT_REPLY, rid, 0, len(data)) + data)

    def _set(self, rnum: int, data: bytes) -> bool:
        with self._lock:
            if rnum == GPIO_CONFIG and len(data) >= 2:
                self.direction = data[1]
            elif rnum == GPIO_SET and len(data) >= 3:
                mask = data[2]
                self.latch = (self.latch & ~mask) | (data[1] & mask)
                self.changes.append(Change(time.monotonic(), self.latch & self.direction))
            elif rnum not in (SMBUS_CONFIG,):
                return False
        return True
