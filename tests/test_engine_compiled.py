"""The mypyc-compiled engine: loaded only when built from the current sources, forced off by
DETECTOR_PURE, and replaying a history to exactly the report of the pure engine.

`make test` runs the suite once pure (coverage) and the engine tests again compiled, with
DETECTOR_EXPECT_COMPILED=1 so that a build that silently fails to load fails the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import detector.engine
from detector import native

ROOT = Path(__file__).resolve().parent.parent


def test_the_expected_engine_is_active() -> None:
    core = sys.modules["detector.engine.core"].__file__ or ""
    if os.environ.get("DETECTOR_PURE"):
        assert not detector.engine.COMPILED
        assert "DETECTOR_PURE" in detector.engine.STATUS
    if os.environ.get("DETECTOR_EXPECT_COMPILED"):
        assert detector.engine.COMPILED, detector.engine.STATUS
    assert core.endswith(".py") is not detector.engine.COMPILED, core


def fake_build(root: Path, build: Path) -> None:
    """A copy of the sources and a build whose manifest matches them (the files are empty:
    only `usable` looks at them)."""
    for path in native.sources():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, root / path)
    files = {f"detector.engine.{name}": f"detector/engine/{name}.so" for name in native.MODULES}
    for file in files.values():
        (build / file).parent.mkdir(parents=True, exist_ok=True)
        (build / file).write_bytes(b"")
    manifest = {"abi": native._abi(), "sources": native.fingerprint(root), "files": files}
    (build / native.MANIFEST).write_text(json.dumps(manifest))


def test_a_build_is_used_only_while_every_source_is_unchanged(tmp_path: Path) -> None:
    root, build = tmp_path / "src", tmp_path / "build"
    fake_build(root, build)
    files, why = native.usable(build, root)
    assert files is not None and set(files) == {f"detector.engine.{n}" for n in native.MODULES}
    # An on-call edit at 3 a.m., of a compiled module or of one it relies on.
    for edited in ("detector/engine/window.py", "detector/model.py"):
        source = root / edited
        original = source.read_text()
        source.write_text(original + "\n# edited\n")
        files, why = native.usable(build, root)
        assert files is None and why == f"stale build: {edited} changed since (make compiled)"
        source.write_text(original)
    assert native.usable(build, root)[0] is not None


def test_a_missing_foreign_or_broken_build_is_not_used(tmp_path: Path) -> None:
    root, build = tmp_path / "src", tmp_path / "build"
    assert native.usable(build, root) == (None, "no compiled build (make compiled)")
    fake_build(root, build)
    manifest = json.loads((build / native.MANIFEST).read_text())
    (build / native.MANIFEST).write_text(json.dumps(manifest | {"abi": "cpython-39 .so"}))
    files, why = native.usable(build, root)
    assert files is None and why.startswith("build is for cpython-39 .so, this is ")
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    (build / "detector/engine/core.so").unlink()
    assert native.usable(build, root) == (None, "incomplete build (make compiled)")
    (build / native.MANIFEST).write_text("{not json")
    files, why = native.usable(build, root)
    assert files is None and why.startswith("unreadable build manifest: ")


def engine_in_subprocess(env: dict[str, str]) -> tuple[bool, str]:
    code = "import detector.engine as e; print(e.COMPILED); print(e.STATUS)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return out[0] == "True", out[1]


def test_detector_pure_forces_the_pure_engine() -> None:
    compiled, why = engine_in_subprocess(os.environ | {"DETECTOR_PURE": "1"})
    assert (compiled, why) == (False, "pure Python (DETECTOR_PURE is set)")


needs_build = pytest.mark.skipif(
    native.usable(native.BUILD)[0] is None and not os.environ.get("DETECTOR_EXPECT_COMPILED"),
    reason=f"no current compiled build: {native.usable(native.BUILD)[1]}",
)


@needs_build
def test_pure_and_compiled_replays_give_the_same_report(tmp_path: Path) -> None:
    """The bench's generated history (failure episodes, deploys, a maintenance, inhibition):
    incidents with every update, and episodes, identical byte for byte."""
    reports = {}
    for engine, extra in (("pure", {"DETECTOR_PURE": "1"}), ("compiled", {})):
        env = {k: v for k, v in os.environ.items() if k != "DETECTOR_PURE"} | extra
        out = tmp_path / f"{engine}.json"
        run = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "replay_bench.py"),
                *("--results", "30000", "--components", "20", "--seed", "7"),
                *("--tracemalloc-results", "0", "--skip-engine-only", "--report-json", str(out)),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        expected = "engine: compiled (mypyc)" if engine == "compiled" else "engine: pure Python"
        assert expected in run.stdout
        reports[engine] = out.read_text()
    report = json.loads(reports["pure"])
    assert len(report["incidents"]) >= 2 and len(report["episodes"]) >= 20
    assert any(len(incident["updates"]) >= 3 for incident in report["incidents"])
    assert reports["compiled"] == reports["pure"]


def test_detector_version_names_the_engine_that_runs() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "detector.cli", "--version"],
        env=os.environ | {"DETECTOR_PURE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.startswith("detector ")
    assert "(engine: pure Python (DETECTOR_PURE is set))" in " ".join(run.stdout.split())


def test_a_machine_without_a_c_compiler_gets_one_line_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native.sysconfig, "get_config_var", lambda name: "no-such-cc -pthread")
    assert native.missing_toolchain() == "no C compiler (no-such-cc) on PATH: apt-get install gcc"
    with pytest.raises(SystemExit, match=r"^make compiled: no C compiler \(no-such-cc\)"):
        native.build(tmp_path / "mypyc")
    assert not (tmp_path / "mypyc").exists()  # nothing half-built is left to be loaded
