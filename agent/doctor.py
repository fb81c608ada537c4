"""``proxitrace doctor``: what on this machine will stop the agent from working, and what to do about it.

Split in two so the judgement is testable: ``gather_facts`` reads the machine (D-Bus, /proc, /etc, the
state dir) and ``diagnose`` is a pure function from those facts to ok / warning / error checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from agent.ble.names import ADAPTER1, ADV_MANAGER, BLUEZ, GET_MANAGED_OBJECTS, MONITOR_MANAGER, OBJECT_MANAGER
from agent.timesource import kernel_synchronised

Status = Literal["ok", "warning", "error"]
BROKEN_ADVERTISING_KERNELS = ("6.12.93", "6.18.34")  # Pi kernels; fixed in later kernels / BlueZ 5.87
BLUEZ_FIXES_BROKEN_KERNELS = (5, 87)
BLUEZ_INTERVALS_AND_TX = (5, 77)
LEGACY_ADV_LEN = 31
LEGACY_NOTE = (
    "legacy advertising only: scanning pauses for each rotation, as a new random address is refused while scanning"
)
EARLIEST_SANE_TIME = 1_735_689_600  # 2025-01-01: a Pi without RTC that boots in 1970 is not sane


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class AdapterFacts:
    name: str
    powered: bool
    max_adv_len: int | None = None
    secondary_channels: tuple[str, ...] = ()
    supported_instances: int | None = None
    features: tuple[str, ...] = ()
    can_advertise: bool = True
    passive_scan: bool = False


@dataclass(frozen=True)
class HostFacts:
    now: float
    kernel_release: str
    machine_model: str = ""
    bluez_version: str | None = None
    bluetoothd_experimental: bool = False
    privacy: str | None = None
    dbus_error: str | None = None
    adapters: tuple[AdapterFacts, ...] = ()
    ntp_synchronized: bool | None = None
    state_dir: str = ""
    state_dir_mode: int | None = None
    state_dir_owner_is_me: bool = True
    loose_files: tuple[str, ...] = field(default_factory=tuple)
    transport_warning: str | None = None


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def diagnose(f: HostFacts) -> list[Check]:
    checks = [_bluez(f), _kernel(f), _dbus(f), *_adapters(f), _privacy(f), _clock(f), _state_dir(f), _transport(f)]
    return [c for c in checks if c is not None]


def _bluez(f: HostFacts) -> Check:
    version = _version_tuple(f.bluez_version)
    if version is None:
        return Check("bluez", "error", "bluetoothd not found", "apt-get install bluez")
    features = []
    if version >= BLUEZ_INTERVALS_AND_TX or f.bluetoothd_experimental:
        features.append("advertising intervals and TX power can be set")
    else:
        features.append(
            "advertising intervals and TX power stay at controller defaults (needs >= 5.77 or "
            "--experimental): use the calibration table for TX power"
        )
    features.append(
        "passive scanning available"
        if f.bluetoothd_experimental
        else "passive scanning needs bluetoothd --experimental (active scanning is used)"
    )
    return Check("bluez", "ok", f"BlueZ {version[0]}.{version[1]}: " + "; ".join(features))


def _kernel(f: HostFacts) -> Check:
    broken = next((k for k in BROKEN_ADVERTISING_KERNELS if f.kernel_release.startswith(k)), None)
    version = _version_tuple(f.bluez_version)
    if broken and not (version and version >= BLUEZ_FIXES_BROKEN_KERNELS):
        return Check(
            "kernel",
            "error",
            f"kernel {f.kernel_release} is known to break D-Bus advertising",
            "upgrade the kernel (apt full-upgrade) or BlueZ to 5.87 or later",
        )
    return Check("kernel", "ok", f"kernel {f.kernel_release}" + (f" on {f.machine_model}" if f.machine_model else ""))


def _dbus(f: HostFacts) -> Check:
    if f.dbus_error:
        return Check(
            "dbus",
            "error",
            f"cannot reach org.bluez on the system bus: {f.dbus_error}",
            "start bluetoothd (systemctl start bluetooth) and check the D-Bus policy allows this user",
        )
    return Check("dbus", "ok", "org.bluez answers on the system bus")


def _adapters(f: HostFacts) -> Sequence[Check]:
    if f.dbus_error:
        return []
    if not f.adapters:
        return [Check("adapters", "error", "no Bluetooth adapter", "plug in a BLE dongle, or check rfkill/dmesg")]
    checks = []
    for a in f.adapters:
        if not a.powered:
            checks.append(
                Check(
                    f"adapter {a.name}",
                    "error",
                    "present but powered off",
                    "bluetoothctl power on (or AutoEnable=true in main.conf); check rfkill",
                )
            )
            continue
        if not a.can_advertise:
            checks.append(
                Check(
                    f"adapter {a.name}",
                    "warning",
                    "powered, but it offers no LE advertising",
                    "use it for scanning only, advertise on another adapter",
                )
            )
            continue
        extended = (a.max_adv_len or 0) > LEGACY_ADV_LEN or bool(a.secondary_channels)
        kind = "extended advertising" if extended else LEGACY_NOTE
        checks.append(Check(f"adapter {a.name}", "ok", f"powered; {kind}"))
    return checks


def _privacy(f: HostFacts) -> Check:
    if f.privacy and f.privacy.lower() not in ("off", "false"):
        return Check(
            "privacy",
            "warning",
            f"BlueZ Privacy={f.privacy}: the kernel then rotates addresses on its "
            "own schedule, out of step with the IDs",
            "set Privacy=off in /etc/bluetooth/main.conf; the agent rotates a non-resolvable address with each ID",
        )
    return Check("privacy", "ok", "BlueZ privacy off; the agent rotates the address with each ID")


def _clock(f: HostFacts) -> Check:
    if f.now < EARLIEST_SANE_TIME:
        return Check(
            "clock",
            "error",
            "the system clock is in the past (no RTC and no NTP yet?)",
            "enable NTP (timedatectl set-ntp true) or fit an RTC; IDs are bound to time",
        )
    if f.ntp_synchronized is False:
        return Check(
            "clock",
            "warning",
            "the clock is not NTP-synchronised: the agent neither advertises nor records until it is",
            "timedatectl set-ntp true (or chrony); on a desk rig only: [agent] accept_unsynchronised_clock_testbed",
        )
    return Check("clock", "ok", "clock synchronised" if f.ntp_synchronized else "clock looks sane")


def _state_dir(f: HostFacts) -> Check:
    if f.state_dir_mode is None:
        return Check("state dir", "ok", f"{f.state_dir} does not exist yet; it will be created 0700")
    problems = []
    if f.state_dir_mode & 0o077:
        problems.append(f"mode {f.state_dir_mode:04o} (want 0700)")
    if not f.state_dir_owner_is_me:
        problems.append("owned by another user")
    if f.loose_files:
        problems.append(f"readable by others: {', '.join(f.loose_files)}")
    if problems:
        return Check(
            "state dir",
            "error",
            f"{f.state_dir}: " + "; ".join(problems),
            f"chmod 0700 {f.state_dir} && chmod 0600 {f.state_dir}/*, owned by the agent's user",
        )
    return Check("state dir", "ok", f"{f.state_dir} is 0700 and its files private")


def _transport(f: HostFacts) -> Check | None:
    if f.transport_warning is None:
        return None
    return Check(
        "transport",
        "warning",
        f.transport_warning,
        "serve the backend over https (server.tls_cert_file) and set backend.allow_insecure_http_lab = false",
    )


async def gather_facts(
    state_dir: Path, now: float, timeout: float = 5.0, transport_warning: str | None = None
) -> HostFacts:
    """Read what ``diagnose`` needs from this machine; never raises for a missing piece.
    ``transport_warning``: what the agent's config says about plain http (``agent.config``'s rule)."""
    adapters, dbus_error = await _bluez_adapters(timeout)
    mode, mine, loose = _state_dir_facts(state_dir)
    return HostFacts(
        now=now,
        kernel_release=os.uname().release,
        machine_model=_read("/proc/device-tree/model").rstrip("\0").strip(),
        bluez_version=_bluez_version(),
        bluetoothd_experimental=_bluetoothd_experimental(),
        privacy=_main_conf_value("Privacy"),
        dbus_error=dbus_error,
        adapters=adapters,
        ntp_synchronized=_ntp_synchronized(),
        state_dir=str(state_dir),
        state_dir_mode=mode,
        state_dir_owner_is_me=mine,
        loose_files=loose,
        transport_warning=transport_warning,
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _bluez_version() -> str | None:
    for candidate in (
        "/usr/libexec/bluetooth/bluetoothd",
        "/usr/lib/bluetooth/bluetoothd",
        shutil.which("bluetoothd"),
        shutil.which("bluetoothctl"),
    ):
        if candidate and Path(candidate).exists():
            try:
                out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    return None


def _bluetoothd_experimental() -> bool:
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        args = _read(str(proc)).split("\0")
        if args and args[0].endswith("bluetoothd"):
            return any(a in ("-E", "--experimental") for a in args[1:])
    value = _main_conf_value("Experimental")
    return bool(value and value.lower() == "true")


def _main_conf_value(key: str) -> str | None:
    m = re.search(rf"^\s*{key}\s*=\s*(\S+)", _read("/etc/bluetooth/main.conf"), re.M)
    return m.group(1) if m else None


def _ntp_synchronized() -> bool | None:
    """The daemon's own signal (the kernel's adjtimex state), so doctor and the time gate never disagree."""
    try:
        return kernel_synchronised()
    except OSError:
        return None


def _state_dir_facts(path: Path) -> tuple[int | None, bool, tuple[str, ...]]:
    try:
        st = path.stat()
    except OSError:
        return None, True, ()
    loose = []
    try:
        for child in path.iterdir():
            if child.is_file() and child.stat().st_mode & 0o077:
                loose.append(child.name)
    except OSError:
        pass
    return stat.S_IMODE(st.st_mode), st.st_uid == os.geteuid(), tuple(sorted(loose))


async def _bluez_adapters(timeout: float) -> tuple[tuple[AdapterFacts, ...], str | None]:
    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        return (), f"no system bus ({exc.__class__.__name__}: {exc})"
    except Exception as exc:  # dbus-fast raises its own auth/connection errors
        return (), f"no system bus ({exc.__class__.__name__}: {exc})"
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination=BLUEZ,
                    path="/",
                    interface=OBJECT_MANAGER,
                    member=GET_MANAGED_OBJECTS,
                )
            ),
            timeout,
        )
    except TimeoutError:
        return (), "org.bluez did not answer"
    finally:
        bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        name = reply.error_name if reply is not None else "no reply"
        return (), str(name)
    adapters = []
    for path, interfaces in sorted(reply.body[0].items()):
        props = interfaces.get(ADAPTER1)
        if props is None:
            continue
        adv = interfaces.get(ADV_MANAGER)
        adapters.append(_adapter_facts(path.rsplit("/", 1)[-1], props, adv, MONITOR_MANAGER in interfaces))
    return tuple(adapters), None


def _value(props: dict[str, object], key: str, default: object = None) -> object:
    v = props.get(key)
    return getattr(v, "value", default) if v is not None else default


def _adapter_facts(name: str, props: dict[str, object], adv: dict[str, object] | None, monitor: bool) -> AdapterFacts:
    caps = _value(adv, "SupportedCapabilities", {}) if adv else {}
    max_len = getattr(caps.get("MaxAdvLen"), "value", None) if isinstance(caps, dict) else None
    return AdapterFacts(
        name=name,
        powered=bool(_value(props, "Powered", False)),
        max_adv_len=max_len,
        secondary_channels=tuple(_value(adv, "SupportedSecondaryChannels", []) or []) if adv else (),
        supported_instances=_value(adv, "SupportedInstances") if adv else None,  # type: ignore[arg-type]
        features=tuple(_value(adv, "SupportedFeatures", []) or []) if adv else (),
        can_advertise=adv is not None,
        passive_scan=monitor,
    )


def render(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():7} {c.name:{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"{'':7} {'':{width}}  -> {c.fix}")
    return "\n".join(lines)
