import stat
from pathlib import Path

import pytest

from agent.calibration import (
    CalibrationError,
    adapter_model_keys,
    expected_rssi,
    load_table,
    measurement_of,
    parse_distance,
    read_local,
    resolve,
    write_local,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_table_is_the_one_in_hw() -> None:
    assert load_table() == load_table(ROOT / "hw" / "calibration.toml")
    assert "default" in load_table()


def test_order_of_trust() -> None:
    table = {
        "default": {"tx_power": -8, "rssi_correction": 0.0},
        "models": {
            "usb:aaaa:0001": {"name": "Measured dongle", "tx_power": 4, "rssi_correction": -3.5},
            "usb:aaaa:0002": {"name": "Known, unmeasured", "quirks": "legacy only"},
        },
    }
    measured = resolve(table, ["usb:aaaa:0001"], None)
    assert (measured.tx_power, measured.rssi_correction, measured.confidence) == (4, -3.5, 2)
    assert measured.source == "table:usb:aaaa:0001"
    unmeasured = resolve(table, ["usb:aaaa:0002"], None)
    assert (unmeasured.tx_power, unmeasured.confidence, unmeasured.source) == (-8, 0, "default")
    assert unmeasured.quirks == "legacy only"
    local = resolve(table, ["usb:aaaa:0001"], {"tx_power": 0, "rssi_correction": 6.0})
    assert (local.tx_power, local.rssi_correction, local.confidence, local.source) == (0, 6.0, 3, "device")
    assert resolve(table, [], None).source == "default"


def test_model_keys_from_sysfs_and_device_tree(tmp_path: Path) -> None:
    usb = tmp_path / "usbdev"
    (usb / "1-1.3:1.0").mkdir(parents=True)
    (usb / "idVendor").write_text("0a12\n")
    (usb / "idProduct").write_text("0001\n")
    sysfs = tmp_path / "bluetooth"
    (sysfs / "hci1").mkdir(parents=True)
    (sysfs / "hci1" / "device").symlink_to(usb / "1-1.3:1.0")
    model = tmp_path / "model"
    model.write_text("Raspberry Pi 4 Model B Rev 1.5\0")
    assert adapter_model_keys("hci1", sysfs, model) == ["usb:0a12:0001"]
    (sysfs / "hci0").mkdir()
    assert adapter_model_keys("hci0", sysfs, model) == [
        "pi:Raspberry Pi 4 Model B Rev 1.5",
        "pi:Raspberry Pi 4 Model B Rev",
        "pi:Raspberry Pi 4 Model B",
        "pi:Raspberry Pi 4 Model",
        "pi:Raspberry Pi 4",
    ]
    table = load_table()
    assert resolve(table, adapter_model_keys("hci0", sysfs, model), None).model.startswith("Raspberry Pi 4")


def test_local_calibration_is_private_and_round_trips(tmp_path: Path) -> None:
    assert read_local(tmp_path) is None
    path = write_local(tmp_path, -4, 5.25, 1_780_000_000, 240)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_local(tmp_path) == {"tx_power": -4, "rssi_correction": 5.2, "measured_at": 1780000000, "samples": 240}
    path.write_text("tx_power = [")
    with pytest.raises(CalibrationError):
        read_local(tmp_path)


def test_expected_rssi_is_tx_power_less_free_space_loss() -> None:
    assert expected_rssi(0.0, 1.0) == -41.0
    assert abs(expected_rssi(-4.0, 2.0) - (-4.0 - 41.0 - 6.0206)) < 1e-3  # 6 dB more loss per doubling


def test_a_measurement_is_the_median_against_the_expected_reading() -> None:
    m = measurement_of([-60, -50, -52, -51, -49, -53, -50, -48, -51, -90], 0.0, 1.0, 5)
    assert m.median_rssi == -51.0 and m.samples == 10 and m.rssi_correction == 10.0  # the outliers do not pull it


def test_too_few_readings_or_a_bad_distance_are_one_line_errors() -> None:
    with pytest.raises(CalibrationError, match="heard the reference only 9 times in 5 s"):
        measurement_of([-50] * 9, 0.0, 1.0, 5)
    assert parse_distance("0.5m") == 0.5 and parse_distance("2") == 2.0
    with pytest.raises(CalibrationError, match="not a distance like 1m"):
        parse_distance("two metres")
    with pytest.raises(CalibrationError, match="must be positive"):
        parse_distance("-1m")
