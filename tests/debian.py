"""Debian packages a test needs, installed by the test set-up when missing.

Real parts, not mocks: promtool, Alertmanager, Chromium, wrk, blackbox_exporter come from
Debian. A test asks for a binary; when it is missing we try `apt-get install` once per package
per run (serialised with a lock: several test processes may ask at once), and only when that
cannot work does the test skip, printing why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_tried: dict[str, str] = {}  # package -> why it failed ("" when it installed)
_updated = False


def require_binary(binary: str, package: str, *, timeout: float = 600) -> str:
    """The path of `binary`, installing Debian's `package` first when it is missing."""
    found = shutil.which(binary) or _sbin(binary)
    if found is not None:
        return found
    reason = _tried.get(package)
    if reason is None:
        reason = _tried[package] = _install(package, timeout)
    found = shutil.which(binary) or _sbin(binary)
    if found is None:
        why = reason or f"the {package} package installed no {binary}"
        print(f"{binary} unavailable: {why}")
        pytest.skip(f"{binary} unavailable: {why}")
    return found


def _sbin(binary: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/bin", "/usr/lib/chromium"):
        candidate = Path(folder) / binary
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _install(package: str, timeout: float) -> str:
    """One attempt at the Debian package; returns why it failed, or "" when it installed."""
    global _updated
    if shutil.which("apt-get") is None:
        return f"not on PATH and no apt-get to install the {package} package"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = [["apt-get", "install", "-y", "--no-install-recommends", package]]
    if not _updated:
        commands.insert(0, ["apt-get", "update"])
    lock = Path(tempfile.gettempdir()) / "detector-tests-apt.lock"
    try:
        with lock.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            for command in commands:
                done = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=timeout
                )
                if done.returncode != 0:
                    return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
                _updated = _updated or command[1] == "update"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing the {package} package failed: {exc}"
    return ""
