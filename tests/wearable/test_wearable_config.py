"""The [wearable] table: the documented block loads, and each mistake is one line naming the key."""

from pathlib import Path

import pytest

from agent.config import ConfigError, config_from_dict, wearable_settings


def test_no_wearable_table_means_no_wearable() -> None:
    assert wearable_settings(config_from_dict({})) is None


def test_a_full_table_becomes_the_edge_settings() -> None:
    config = config_from_dict(
        {
            "wearable": {
                "chip": "gpiochip0",
                "button_line": 5,
                "led_line": 6,
                "button_active_low": False,
                "led_active_low": True,
                "tan_dir": "/media",
                "consent_seconds": 120,
            }
        }
    )
    s = wearable_settings(config)
    assert s is not None
    assert (s.chip, s.button_line, s.led_line, s.button_active_low, s.led_active_low) == (
        Path("/dev/gpiochip0"),
        5,
        6,
        False,
        True,
    )
    assert (s.tan_dir, s.consent_seconds) == (Path("/media"), 120.0)


def test_a_chip_path_is_kept_and_leds_alone_need_no_tan_dir() -> None:
    s = wearable_settings(config_from_dict({"wearable": {"chip": "/dev/gpiochip4"}}))
    assert s is not None and s.chip == Path("/dev/gpiochip4") and s.tan_dir is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"chip": "gpiochip0", "led_line": 17}, "wearable.led_line: the LED and the button cannot share line 17"),
        ({"chip": "gpiochip0", "button_line": -1}, "wearable.button_line: line offsets are 0 or more"),
        ({"chip": "gpiochip0", "consent_seconds": 5}, "wearable.consent_seconds: must be between 10 and 3600"),
        ({"tan_dir": "/media"}, "wearable.tan_dir: needs wearable.chip (the button's long press is the consent)"),
        ({"chip": "gpiochip0", "tan_dir": "media"}, "wearable.tan_dir: must be an absolute path, got 'media'"),
        ({"chip": 0}, "wearable.chip: expected a string, got 0"),
        ({"buton_line": 3}, "wearable.buton_line: unknown key"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"wearable": table})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
