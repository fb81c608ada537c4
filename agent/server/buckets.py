"""Release buckets and bundle tags: when a published key may go out, and under which tag.

A key is released at the end of the bucket in which both (a) it was received and (b) every ID it can
generate has stopped being broadcast (its day is over), so no list ever carries a live ID. The bundle
tag of a bucket is its end in milliseconds, as the DP-3T v2 backend does: an agent sends the last tag it
processed and gets everything released after it.
"""

from __future__ import annotations

from agent.clock import day_of, start_of_day
from agent.schemes import gaen
from agent.schemes.base import SchemeName
from agent.schemes.published import PublishedKey


def validity_end(scheme: SchemeName, key: PublishedKey, received: float) -> float:
    """The last moment an ID derived from ``key`` may still be on the air.

    A GAEN key covers its own rolling period. A DP-3T SK_t seeds every later day by hashing, up to the
    moment the device reset its chain after reporting, which is during the day of the upload: so the
    chain is dead at the end of the day the upload arrived.
    """
    if scheme is SchemeName.GAEN:
        return float((key.rolling_start_interval_number + key.rolling_period) * gaen.INTERVAL_SECONDS)
    return float(start_of_day(day_of(received) + 1))


def bucket_end(t: float, bucket_seconds: int) -> int:
    """End (unix seconds) of the bucket containing ``t``; a time on a boundary opens the next bucket."""
    return (int(t) // bucket_seconds + 1) * bucket_seconds


def release_tag_ms(scheme: SchemeName, key: PublishedKey, received: float, bucket_seconds: int) -> int:
    """The bundle tag (ms) of the bucket that releases ``key``."""
    return bucket_end(max(received, validity_end(scheme, key, received)), bucket_seconds) * 1000


def current_tag_ms(now: float, bucket_seconds: int) -> int:
    """The tag of the newest closed bucket: everything up to it may be served."""
    return (int(now) // bucket_seconds) * bucket_seconds * 1000


def normalise_tag_ms(tag: int, bucket_seconds: int) -> int:
    """A client-sent tag rounded down to a bucket boundary, so caches see few distinct values."""
    step = bucket_seconds * 1000
    return (tag // step) * step
