"""hw/vm/run's own plumbing, without booting a VM: the output it gives back must not eat the caller's log.

The VM itself cannot boot in this tier (it needs minutes of QEMU), so ``vng`` is replaced by a stand-in
(a mock at that boundary) that does to its stdout and stderr exactly what QEMU's "file" chardevs do with the
paths vng hands them: open /proc/self/fd/1 and /proc/self/fd/2 afresh with O_TRUNC and write the guest's
output there. Everything else — the script, its bash, the redirections — is the real one.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

QEMU_LIKE_VNG = """#!/usr/bin/env python3
import os, sys
for fd, text in ((1, b"guest stdout\\n"), (2, b"guest stderr\\n")):
    out = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # as QEMU's file chardev
    os.write(out, text)
    os.close(out)
sys.exit(7)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="hw/vm/run refuses to run as anyone but root")
def test_vm_output_is_appended_to_a_log_file_not_truncating_it(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    (tools / "venv" / "bin").mkdir(parents=True)
    vng = tools / "venv" / "bin" / "vng"
    vng.write_text(QEMU_LIKE_VNG)
    vng.chmod(0o755)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    log = tmp_path / "ci.log"
    with log.open("wb") as f:
        f.write(b"pytest: 900 passed\n")  # what .ci/run logged before the VM tier
        f.flush()
        proc = subprocess.run(
            [str(ROOT / "hw" / "vm" / "run"), "true"],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PROXITRACE_VM_SKIP_INSTALL": "1",
                "PROXITRACE_VM_TOOLS": str(tools),
                "PROXITRACE_VM_KERNEL": str(kernel),
                "PROXITRACE_VM_OUT": str(tmp_path / "out"),
            },
            timeout=60,
        )
    text = log.read_bytes()
    assert proc.returncode == 7  # the guest's exit code, through the pipes
    assert text.startswith(b"pytest: 900 passed\n"), text[:200]
    assert b"\0" not in text, "a reopen with O_TRUNC left a hole where the log was"
    assert b"guest stdout\n" in text and b"guest stderr\n" in text
    assert b"VM exited 7" in text
