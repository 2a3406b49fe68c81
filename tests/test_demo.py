"""`make run`: ports from the environment, the rendered config, and the sandbox identity check
against a real sandbox child process and a real foreign server on loopback."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from detector import demo
from detector.demo import DemoError
from detector.engine.rulefile import load_rules
from detector.settings import load_settings

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[int]:
    """A foreign server holding a port: it accepts connections but is no sandbox."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def stop(child: subprocess.Popen[bytes]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    child.terminate()
    child.wait(timeout=10)


def test_ports_default_to_9464_and_9465() -> None:
    assert demo.demo_ports({}) == (9464, 9465)
    assert demo.demo_ports({"DETECTOR_PORT": "", "SANDBOX_PORT": " "}) == (9464, 9465)


def test_ports_come_from_the_environment() -> None:
    assert demo.demo_ports({"DETECTOR_PORT": "18000", "SANDBOX_PORT": "18001"}) == (18000, 18001)
    assert demo.demo_ports({"SANDBOX_PORT": "18001"}) == (9464, 18001)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DETECTOR_PORT": "abc"}, "DETECTOR_PORT='abc': expected a port number from 1 to 65535"),
        ({"SANDBOX_PORT": "0"}, "SANDBOX_PORT='0': expected a port number from 1 to 65535"),
        ({"SANDBOX_PORT": "70000"}, "SANDBOX_PORT='70000': expected a port number"),
        ({"SANDBOX_PORT": "-1"}, "SANDBOX_PORT='-1': expected a port number"),
        ({"DETECTOR_PORT": "9000", "SANDBOX_PORT": "9000"}, "are both 9000"),
    ],
)
def test_bad_ports_are_one_clear_line(environ: dict[str, str], message: str) -> None:
    with pytest.raises(DemoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        demo.demo_ports(environ)


def test_rendered_config_follows_the_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_USERNAME", "demo")
    monkeypatch.setenv("SANDBOX_PASSWORD", "pw")
    config = demo.render_config(DEMO_CONFIG, 18000, 18001)
    path = demo.write_run_config(config, tmp_path / "var" / "demo-run.yaml")

    settings = load_settings(path)
    assert settings.listen == "127.0.0.1:18000"
    assert len(settings.probe_specs) == 11
    assert {spec.target for spec in settings.probe_specs} == {"http://127.0.0.1:18001"}
    # Rule paths still reach config/demo-rules/ from the rendered file's folder.
    assert [p.name for p in settings.rule_paths()] == ["demo-rules"]
    assert len(load_rules(settings.rule_paths()).rules) == 5


def test_missing_demo_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match=r"demo\.yaml: cannot read: No such file"):
        demo.render_config(tmp_path / "demo.yaml", 18000, 18001)


def test_own_sandbox_is_recognised_and_serves_the_platform() -> None:
    port = free_port()
    child = demo.start_sandbox(port, "run-1")
    try:
        demo.wait_for_sandbox(child, port, "run-1")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/faults") as response:
            assert response.status == 200
        # A server that answers with another run's id is not ours.
        with pytest.raises(DemoError, match=f"port {port} answers with another sandbox run"):
            demo.wait_for_sandbox(child, port, "run-2", deadline_s=0.5)
    finally:
        stop(child)


def test_the_sandbox_goes_when_the_demo_process_goes() -> None:
    port = free_port()
    child = demo.start_sandbox(port, "run-1")
    try:
        demo.wait_for_sandbox(child, port, "run-1")
        assert child.stdin is not None
        child.stdin.close()  # what the kernel does when the demo process exits, even on kill -9
        assert child.wait(timeout=10) is not None
    finally:
        stop(child)


def test_a_foreign_server_on_the_sandbox_port_stops_the_demo(listener: int) -> None:
    child = demo.start_sandbox(listener, "run-1")
    try:
        with pytest.raises(DemoError, match=f"is port {listener} in use\\? Set SANDBOX_PORT"):
            demo.wait_for_sandbox(child, listener, "run-1")
    finally:
        stop(child)


def test_a_busy_detector_port_stops_the_demo_before_anything_starts(listener: int) -> None:
    with pytest.raises(DemoError, match=f"port {listener} is in use: set DETECTOR_PORT"):
        demo.check_port_free(listener, "DETECTOR_PORT")
    demo.check_port_free(free_port(), "DETECTOR_PORT")


def test_make_run_with_a_bad_port_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DETECTOR_PORT", "x")
    assert demo.main([]) == 1
    assert capsys.readouterr().err == (
        "detector: error: DETECTOR_PORT='x': expected a port number from 1 to 65535\n"
    )
