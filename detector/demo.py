"""`make run`: the sandbox platform and the daemon on the demo config, side by side.

Ports come from DETECTOR_PORT and SANDBOX_PORT (defaults 9464 and 9465). The demo renders
config/demo.yaml with those ports into var/demo-run.yaml and runs the daemon on that. It starts
its own sandbox child, which serves a per-run identity at /_sandbox/run-id, and goes on only
when the child is alive and the server answering on SANDBOX_PORT is that child: a sandbox left
over from another run (or any other server on the port) would otherwise be probed silently.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from detector import cli

DEMO_CONFIG = Path("config/demo.yaml")
RUN_CONFIG = Path("var/demo-run.yaml")
DEFAULT_PORTS = {"DETECTOR_PORT": 9464, "SANDBOX_PORT": 9465}
IDENTITY_PATH = "/_sandbox/run-id"

BANNER = """
detector demo (config for this run: {config})
  status page   http://127.0.0.1:{detector_port}/
  API           http://127.0.0.1:{detector_port}/api/v2/summary.json
  metrics       http://127.0.0.1:{detector_port}/metrics
  sandbox       http://127.0.0.1:{sandbox_port}/  (the simulated platform)

Break DHL label creation for 3 minutes (an incident opens within about a minute):
  curl -X POST http://127.0.0.1:{sandbox_port}/_sandbox/faults \\
       -d '{{"component": "carriers/dhl", "mode": "error", "seconds": 180}}'
Heal everything at once:   curl -X DELETE http://127.0.0.1:{sandbox_port}/_sandbox/faults
Write API token (this run): export DETECTOR_API_TOKEN={token}
Ctrl-C stops both.
"""


class DemoError(Exception):
    """Why the demo cannot start: printed as one line."""


def demo_ports(environ: Mapping[str, str]) -> tuple[int, int]:
    """(detector port, sandbox port) from DETECTOR_PORT / SANDBOX_PORT, else the defaults."""
    ports = []
    for name, default in DEFAULT_PORTS.items():
        text = environ.get(name, "").strip() or str(default)
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise DemoError(f"{name}={text!r}: expected a port number from 1 to 65535")
        ports.append(int(text))
    if ports[0] == ports[1]:
        raise DemoError(f"DETECTOR_PORT and SANDBOX_PORT are both {ports[0]}: pick two ports")
    return ports[0], ports[1]


def render_config(source: Path, detector_port: int, sandbox_port: int) -> dict[str, Any]:
    """The demo config with the daemon listening on `detector_port` and every probe aimed at
    the sandbox on `sandbox_port`. Rule paths become absolute: the rendered file lives
    elsewhere and rule paths are relative to the config file."""
    try:
        config = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise DemoError(
            f"{source}: cannot read: {exc.strerror} (run it from the checkout)"
        ) from None
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    config["listen"] = f"127.0.0.1:{detector_port}"
    config.setdefault("probe_defaults", {})["target"] = sandbox
    for probe in config.get("probes", []):
        if "target" in probe:
            probe["target"] = sandbox
    config["rules"] = [str((source.parent / path).resolve()) for path in config["rules"]]
    return config


def write_run_config(config: Mapping[str, Any], path: Path = RUN_CONFIG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `make run` from config/demo.yaml for this run's ports; do not edit.\n"
    path.write_text(header + yaml.safe_dump(dict(config), sort_keys=False))
    return path


def start_sandbox(port: int, run_id: str) -> subprocess.Popen[bytes]:
    """The sandbox child, in its own session so that Ctrl-C reaches only the daemon: the
    sandbox keeps answering while in-flight probes finish, and goes when the demo ends (its
    stdin pipe closes then, even after a kill -9)."""
    command = [sys.executable, "-m", "detector.demo", "--sandbox", str(port), run_id]
    return subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)


def wait_for_sandbox(
    child: subprocess.Popen[bytes], port: int, run_id: str, deadline_s: float = 15.0
) -> None:
    """Return once the server on `port` answers with this run's id; raise DemoError when the
    child dies or another server holds the port."""
    url = f"http://127.0.0.1:{port}{IDENTITY_PATH}"
    until = time.monotonic() + deadline_s
    answer = ""
    while time.monotonic() < until:
        if child.poll() is not None:
            raise DemoError(
                f"the sandbox exited with status {child.returncode}: is port {port} in use?"
                " Set SANDBOX_PORT to a free port"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                answer = response.read().decode(errors="replace").strip()
        except (urllib.error.URLError, OSError):
            answer = ""  # not listening yet, or a server without that path
        if answer == run_id:
            return
        time.sleep(0.1)
    who = "another sandbox run" if answer else "nothing, or not our sandbox"
    raise DemoError(f"port {port} answers with {who}: stop it or set SANDBOX_PORT")


def serve_sandbox(port: int, run_id: str) -> None:
    """The child: the ordinary sandbox app plus the identity route."""
    from detector.sandbox import make_app

    app = make_app()

    async def identity(request: web.Request) -> web.Response:
        return web.Response(text=run_id)

    app.router.add_get(IDENTITY_PATH, identity)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        web.run_app(app, host="127.0.0.1", port=port, print=None)
    except OSError as exc:  # the parent explains; one line here, not a traceback
        print(f"detector: sandbox: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()  # EOF: the demo process is gone
    os.kill(os.getpid(), signal.SIGTERM)  # run_app shuts down cleanly on SIGTERM


def check_port_free(port: int, variable: str) -> None:
    """Fail early with the variable to change, before anything starts."""
    with socket.socket() as listener:
        # As the server will: TIME_WAIT connections from the last run must not count as busy.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(f"port {port} is in use: set {variable} to a free port") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--sandbox"] and len(args) == 3:
        serve_sandbox(int(args[1]), args[2])
        return 0
    try:
        detector_port, sandbox_port = demo_ports(os.environ)
        check_port_free(detector_port, "DETECTOR_PORT")
        config = write_run_config(render_config(DEMO_CONFIG, detector_port, sandbox_port))
    except DemoError as exc:
        print(f"detector: error: {exc}", file=sys.stderr)
        return 1
    # Demo-only credentials: the sandbox accepts any; production reads real ones from env.
    os.environ.setdefault("SANDBOX_USERNAME", "demo")
    os.environ.setdefault("SANDBOX_PASSWORD", secrets.token_urlsafe(12))
    token = os.environ.setdefault("DETECTOR_API_TOKEN", secrets.token_urlsafe(16))
    run_id = secrets.token_hex(8)
    sandbox = start_sandbox(sandbox_port, run_id)
    try:
        wait_for_sandbox(sandbox, sandbox_port, run_id)
        ports = {"detector_port": detector_port, "sandbox_port": sandbox_port}
        print(BANNER.format(config=config, token=token, **ports), flush=True)
        return cli.main(["run", "--config", str(config)])
    except DemoError as exc:
        print(f"detector: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if sandbox.stdin is not None:
            sandbox.stdin.close()
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
