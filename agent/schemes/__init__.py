"""The ID schemes: pure key schedules, ID derivation, metadata and advert payloads (no I/O)."""

from agent.schemes.base import Broadcast, DecodedAdvert, Rejected, Scheme, SchemeName
from agent.schemes.decoder import decode_advertising_data, decode_service_data

__all__ = [
    "Broadcast",
    "DecodedAdvert",
    "Rejected",
    "Scheme",
    "SchemeName",
    "decode_advertising_data",
    "decode_service_data",
]
