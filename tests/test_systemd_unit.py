"""The shipped unit, checked by systemd itself: it parses, it is Type=notify with a watchdog,
and `systemd-analyze security` rates its exposure at 2.0 or better."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from debian import require_binary

UNIT = Path(__file__).parent.parent / "systemd" / "detector.service"
INSTALLED = "/opt/detector/.venv/bin/detector"
MAX_EXPOSURE = 2.0


def _unit_here(tmp_path: Path) -> Path:
    """The unit with its program path pointing at this checkout's `detector` (verify checks
    that every Exec*= program exists and is executable)."""
    program = Path(sys.prefix) / "bin" / "detector"
    assert program.exists(), program
    unit = tmp_path / "detector.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(program)))
    return unit


def test_unit_is_type_notify_with_a_watchdog() -> None:
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^NotifyAccess=main$", text, re.M)
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_security_exposure_is_at_most_two(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert found is not None, done.stdout + done.stderr
    exposure = float(found.group(1))
    print(f"systemd-analyze security: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE
