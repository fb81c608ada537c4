"""TAN files on removable media: each offered once, bad ones refused in one line that never shows a TAN."""

import logging
import os
from pathlib import Path

import pytest

from agent.wearable import TanFile, TanInbox, WearableError
from agent.wearable.inbox import TAN_SUFFIX, parse_tan_file

TAN = "ABCD-EFGH-JKMN"


def test_a_tan_file_two_levels_down_is_found_once(tmp_path: Path) -> None:
    stick = tmp_path / "wearer" / "STICK"
    stick.mkdir(parents=True)
    (stick / f"report{TAN_SUFFIX}").write_text(f'tan = "{TAN}"\n')
    inbox = TanInbox(tmp_path)
    assert inbox.poll() == TanFile(stick / f"report{TAN_SUFFIX}", TAN)
    assert inbox.poll() is None  # offered once


def test_a_file_written_anew_is_offered_again_and_forget_reoffers(tmp_path: Path) -> None:
    path = tmp_path / f"a{TAN_SUFFIX}"
    path.write_text(f'tan = "{TAN}"\n')
    inbox = TanInbox(tmp_path)
    assert inbox.poll() is not None
    inbox.forget(path)
    assert inbox.poll() == TanFile(path, TAN)
    path.write_text('tan = "WXYZ-0000-1111"\n')
    os.utime(path, ns=(1, 1))  # a new modification time, as a new write gives
    assert inbox.poll() == TanFile(path, "WXYZ-0000-1111")


def test_other_files_and_deeper_ones_are_not_tan_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(f'tan = "{TAN}"\n')
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / f"x{TAN_SUFFIX}").write_text(f'tan = "{TAN}"\n')
    assert TanInbox(tmp_path).poll() is None


def test_a_missing_directory_is_simply_empty(tmp_path: Path) -> None:
    assert TanInbox(tmp_path / "not-mounted").poll() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tan = ", "not valid TOML"),
        ('tan = ""', "no TAN"),
        ("tan = 12", "no TAN"),
        ('code = "X"', "unknown key 'code'"),
        ('tan = "' + "A" * 65 + '"', "cannot be a TAN"),
        ('tan = "AB\\u0007CD"', "cannot be a TAN"),
    ],
)
def test_each_bad_tan_file_is_one_line_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(WearableError) as caught:
        parse_tan_file(text, "/media/x.proxitrace-tan")
    assert str(caught.value).startswith("/media/x.proxitrace-tan: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_file_is_logged_once_left_in_place_and_a_good_one_still_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / f"a{TAN_SUFFIX}"
    bad.write_bytes(b"\xff\xfe not text")
    big = tmp_path / f"b{TAN_SUFFIX}"
    big.write_text(f'tan = "{TAN}"\n' + "#" * 5000)
    good = tmp_path / f"c{TAN_SUFFIX}"
    good.write_text(f'tan = "{TAN}"\n')
    inbox = TanInbox(tmp_path)
    caplog.set_level(logging.INFO)
    assert inbox.poll() == TanFile(good, TAN)
    assert inbox.poll() is None
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2 and "not UTF-8" in refused[0] and "too large" in refused[1]
    assert bad.exists() and big.exists()
    assert all(TAN not in r.getMessage() for r in caplog.records)
