"""The LED reader the GPIO tests rely on tells every pattern apart, also when the edges come late."""

import random

import pytest
from support.led_patterns import ALL_SHOWN, shown_by

from agent.feedback import Shown, pattern_for


def recorded(shown: Shown, seconds: float, jitter: float, seed: int) -> list[tuple[float, bool]]:
    """Levels as a late-waking LED task sets them: each edge up to ``jitter`` seconds after its time."""
    rng = random.Random(seed)
    t, out = 0.0, []
    while t < seconds:
        for on, step in pattern_for(shown):
            out.append((t + rng.uniform(0, jitter), on))
            t += step
    return out


@pytest.mark.parametrize("shown", ALL_SHOWN, ids=lambda s: s.attention or s.signal)
def test_each_pattern_is_read_back_as_itself(shown: Shown) -> None:
    assert shown_by(recorded(shown, 12.0, 0.04, 1), 1.0, 10.0)[0] == shown
