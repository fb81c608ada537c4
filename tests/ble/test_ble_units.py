"""Pure parts of the BLE edge: error classes, adapter choice, rotation schedule, duty cycle."""

from __future__ import annotations

import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError, BleakError
from dbus_fast import DBusError, Variant

from agent.ble.adapters import NoAdapter, choose_adapters
from agent.ble.advertiser import AdvertisingCapability, backoff_delay
from agent.ble.bluez_watch import adapter_name
from agent.ble.errors import ErrorKind, classify, describe
from agent.ble.scanner import DutyCycle
from agent.config import BleSection, ble_settings
from agent.schemes.base import Broadcast, SchemeName


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (BleakDBusError("org.bluez.Error.InProgress", []), ErrorKind.TRANSIENT),
        (BleakDBusError("org.bluez.Error.Failed", ["No discovery started"]), ErrorKind.TRANSIENT),
        (BleakDBusError("org.bluez.Error.NotReady", []), ErrorKind.NOT_READY),
        (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), ErrorKind.BLUEZ_GONE),
        (DBusError("org.freedesktop.DBus.Error.UnknownObject", "x"), ErrorKind.ADAPTER_GONE),
        (DBusError("org.bluez.Error.NotPermitted", "Maximum advertisements reached"), ErrorKind.REJECTED),
        (BleakError("adapter 'hci7' not found"), ErrorKind.ADAPTER_GONE),
        (BleakError("passive scanning on Linux requires BlueZ >= 5.56 with --experimental"), ErrorKind.UNSUPPORTED),
        (BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF), ErrorKind.NOT_READY),
        (OSError(9, "Bad file descriptor"), ErrorKind.BUS_GONE),
        (EOFError(), ErrorKind.BUS_GONE),
        (FileNotFoundError(2, "No such file"), ErrorKind.BUS_GONE),
        (TimeoutError(), ErrorKind.TRANSIENT),
        (BleakDBusError("org.example.Weird", []), ErrorKind.UNKNOWN),
        (ValueError("bug"), ErrorKind.UNKNOWN),
    ],
)
def test_errors_are_classified_for_recovery(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind
    assert kind.value in describe(exc)


def test_adapter_choice_prefers_separate_controllers() -> None:
    assert choose_adapters("auto", ("auto",), ["hci1", "hci0"]) == ("hci0", ("hci1",))
    assert choose_adapters("auto", ("auto",), ["hci0"]) == ("hci0", ("hci0",))
    assert choose_adapters("auto", ("auto",), ["hci10", "hci2", "hci0"]) == ("hci0", ("hci2", "hci10"))
    assert choose_adapters("hci1", ("hci1", "hci1"), []) == ("hci1", ("hci1",))
    assert choose_adapters("none", ("auto",), ["hci0", "hci1"]) == (None, ("hci0", "hci1"))
    assert choose_adapters(None, ("hci3",), []) == (None, ("hci3",))
    with pytest.raises(NoAdapter):
        choose_adapters("auto", ("auto",), [])


def _live(valid_from: float, valid_until: float) -> Broadcast:
    return Broadcast(SchemeName.GAEN, bytes(16), bytes(20), valid_from, valid_until)


@pytest.mark.parametrize(
    ("props", "overlap"),
    [
        (
            {
                "SupportedFeatures": Variant("as", ["CanSetTxPower", "HardwareOffload"]),
                "SupportedInstances": Variant("y", 2),
            },
            True,
        ),
        ({"SupportedFeatures": Variant("as", ["HardwareOffload"]), "SupportedInstances": Variant("y", 1)}, True),
        ({"SupportedFeatures": Variant("as", ["HardwareOffload"]), "SupportedInstances": Variant("y", 0)}, False),
        ({"SupportedFeatures": Variant("as", []), "SupportedInstances": Variant("y", 4)}, False),  # legacy multi-adv
        ({"SupportedInstances": Variant("y", 4)}, False),  # a BlueZ before SupportedFeatures
        # BlueZ 5.66 without --experimental: no SupportedFeatures, but the 1M secondary channel says extended
        ({"SupportedSecondaryChannels": Variant("as", ["1M", "2M"]), "SupportedInstances": Variant("y", 2)}, True),
        ({"SupportedSecondaryChannels": Variant("as", ["1M"]), "SupportedInstances": Variant("y", 0)}, False),
        ({"SupportedFeatures": Variant("as", ["HardwareOffload"])}, False),
        ({}, False),
    ],
)
def test_make_before_break_only_with_per_set_addresses_and_a_free_instance(
    props: dict[str, Variant], overlap: bool
) -> None:
    assert AdvertisingCapability.from_properties(props).overlap is overlap


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, maximum=10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_duty_cycle() -> None:
    assert DutyCycle().continuous and DutyCycle(0, 60).continuous and DutyCycle(60, 60).continuous
    duty = DutyCycle(10, 60)
    assert duty.is_on(600.0) and duty.is_on(609.9) and not duty.is_on(610.0) and not duty.is_on(659.0)
    assert duty.next_change(600.0) == 610.0
    assert duty.next_change(630.0) == 660.0
    assert DutyCycle().next_change(1.0) == float("inf")


def test_adapter_paths() -> None:
    assert adapter_name("/org/bluez/hci0") == "hci0"
    assert adapter_name("/org/bluez/hci0/dev_00_11_22_33_44_55") is None
    assert adapter_name("/org/bluez") is None


def test_settings_from_the_agent_config() -> None:
    s = ble_settings(BleSection(scan_adapters=("hci1",), scan_seconds=5, scan_period_seconds=30), -12)
    assert s.scan_adapters == ("hci1",) and s.tx_power == -12 and s.scan_seconds == 5
    assert ble_settings(BleSection(tx_power=4), -12).tx_power == 4
