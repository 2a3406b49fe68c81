"""`make run`: the sandbox platform and the daemon on the demo config, side by side."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time

from detector import cli

SANDBOX_PORT = 9465
BANNER = """
detector demo
  status page   http://127.0.0.1:9464/
  API           http://127.0.0.1:9464/api/v2/summary.json
  metrics       http://127.0.0.1:9464/metrics
  sandbox       http://127.0.0.1:{port}/  (the simulated platform)

Break DHL label creation for 3 minutes (an incident opens within about a minute):
  curl -X POST http://127.0.0.1:{port}/_sandbox/faults \\
       -d '{{"component": "carriers/dhl", "mode": "error", "seconds": 180}}'
Heal everything at once:   curl -X DELETE http://127.0.0.1:{port}/_sandbox/faults
Write API token (this run): {token}
Ctrl-C stops both.
"""


def _wait_for_port(port: int, deadline_s: float = 15.0) -> bool:
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def main() -> int:
    # Demo-only credentials: the sandbox accepts any; production reads real ones from env.
    os.environ.setdefault("SANDBOX_USERNAME", "demo")
    os.environ.setdefault("SANDBOX_PASSWORD", secrets.token_urlsafe(12))
    token = os.environ.setdefault("DETECTOR_API_TOKEN", secrets.token_urlsafe(16))
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "detector.cli", "sandbox", "--port", str(SANDBOX_PORT)]
    )
    try:
        if not _wait_for_port(SANDBOX_PORT):
            print("detector: error: the sandbox did not start on port 9465", file=sys.stderr)
            return 1
        print(BANNER.format(port=SANDBOX_PORT, token=token), flush=True)
        return cli.main(["run", "--config", "config/demo.yaml"])
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
