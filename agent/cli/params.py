"""click parameter types shared by commands, so bad input always ends in one clear line."""

from __future__ import annotations

import click


class HexBytes(click.ParamType):
    """Hex text → bytes, optionally of fixed lengths (colons, spaces and a 0x prefix are tolerated)."""

    name = "hex"

    def __init__(self, *lengths: int) -> None:
        self.lengths = lengths

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        text = str(value).strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
        try:
            data = bytes.fromhex(text)
        except ValueError:
            self.fail("not valid hex (odd length or a non-hex character)", param, ctx)
        if self.lengths and len(data) not in self.lengths:
            want = " or ".join(str(n) for n in self.lengths)
            self.fail(f"must be {want} bytes, got {len(data)}", param, ctx)
        return data
