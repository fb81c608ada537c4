"""A GPIO chip that cannot be used stops the start with one line naming it (the kernel answers these here;
the lines themselves are tested on the VM's real gpiochip in tests/bluez/test_gpio_real.py)."""

from pathlib import Path

import pytest

from agent.wearable import GpioPanel, WearableError, WearableSettings


@pytest.mark.parametrize(
    ("chip", "message"),
    [
        (Path("/dev/gpiochip-that-is-not-there"), "wearable.chip: /dev/gpiochip-that-is-not-there: no such GPIO chip"),
        (Path("/dev/null"), "wearable.chip: /dev/null is not a GPIO chip"),
        (None, "wearable.chip: not set"),
    ],
)
def test_an_unusable_chip_is_one_line(chip: Path | None, message: str) -> None:
    with pytest.raises(WearableError) as caught:
        GpioPanel.open(WearableSettings(chip=chip))
    assert str(caught.value) == message
