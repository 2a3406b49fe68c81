"""The engine compiled with mypyc, used only when it was built from the sources in this tree.

`make compiled` (`python -m detector.native build`) compiles the hot engine modules into
`build/mypyc/`, outside the source tree, and records a SHA-256 of every source the build
depends on. `detector.engine` calls `activate()` before importing its modules: the compiled
ones are loaded only when every recorded hash matches the file as it is now, so an edited
.py is never shadowed by a stale .so; anything else (no build, a stale or broken one, another
Python, `DETECTOR_PURE=1`) runs the pure-Python engine, which stays the reference.
`detector.engine.COMPILED` and `STATUS` say which one is active and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mypyc"
MANIFEST = "manifest.json"
PACKAGE = "detector.engine"
# The hot path of a replay or an evaluation; the rest of the engine (rule files, the `when`
# language, texts, state) runs rarely or leans on lark and yaml, and stays interpreted.
MODULES = ("window", "series", "calendar", "rulematch", "views", "lifecycle", "core")
# Modules the compiled code calls into or reads the fields of: an edit to one of them could
# change what the compiled code relies on, so it makes the build stale too.
DEPENDS = (
    "detector/engine/when.py",
    "detector/engine/texts.py",
    "detector/model.py",
    "detector/timeutil.py",
)


def sources() -> list[str]:
    return [f"detector/engine/{name}.py" for name in MODULES] + list(DEPENDS)


def fingerprint(root: Path = ROOT) -> dict[str, str]:
    """SHA-256 of each source the build depends on, as the files are now."""
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in sources()}


def _abi() -> str:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return f"{sys.implementation.cache_tag} {suffix}"


class _Finder(importlib.abc.MetaPathFinder):
    """Serves exactly the modules of one build, by name, from its files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        return None if file is None else importlib.util.spec_from_file_location(fullname, file)


def usable(build: Path, root: Path = ROOT) -> tuple[dict[str, Path] | None, str]:
    """The compiled modules' files, or None and why the build cannot be used."""
    try:
        manifest = json.loads((build / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "no compiled build (make compiled)"
    except (OSError, ValueError) as error:
        return None, f"unreadable build manifest: {error}"
    if manifest.get("abi") != _abi():
        return None, f"build is for {manifest.get('abi')}, this is {_abi()}"
    try:
        current = fingerprint(root)
    except OSError as error:  # an installed copy without its sources: nothing to compare
        return None, f"cannot hash the sources: {error}"
    stale = sorted(p for p in current if manifest.get("sources", {}).get(p) != current[p])
    if stale or set(manifest.get("sources", {})) != set(current):
        changed = ", ".join(stale) or "the module list"
        return None, f"stale build: {changed} changed since (make compiled)"
    files = {name: build / file for name, file in manifest.get("files", {}).items()}
    if not files or not all(file.is_file() for file in files.values()):
        return None, "incomplete build (make compiled)"
    return files, "compiled (mypyc)"


def activate() -> tuple[bool, str]:
    """Route the engine's compiled modules to the build when it is current; called by
    `detector.engine` before it imports anything. Returns (compiled, why)."""
    if os.environ.get("DETECTOR_PURE", "") not in ("", "0"):
        return False, "pure Python (DETECTOR_PURE is set)"
    files, why = usable(BUILD)
    if files is None:
        return False, f"pure Python: {why}"
    finder = _Finder(files)
    sys.meta_path.insert(0, finder)
    try:
        for name in MODULES:
            importlib.import_module(f"{PACKAGE}.{name}")
    except Exception as error:  # a broken .so must not cost the daemon its engine
        sys.meta_path.remove(finder)
        for name in files:
            sys.modules.pop(name, None)
        return False, f"pure Python: the compiled build does not load ({error})"
    return True, why


# ---------------------------------------------------------------------------------- build


def build(target: Path = BUILD) -> str:
    """Compile MODULES into `target` unless it is current; returns what happened."""
    started = time.monotonic()
    files, _ = usable(target)
    if files is not None:
        return f"{target}: up to date"
    missing = missing_toolchain()
    if missing is not None:
        raise SystemExit(f"make compiled: {missing}")
    before = fingerprint()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mypyc-", dir=target.parent))
    try:
        built = _compile(work)
        if fingerprint() != before:
            return "sources changed during the build: nothing installed, run it again"
        manifest = {"abi": _abi(), "sources": before, "files": built}
        (work / "lib" / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(target, ignore_errors=True)
        (work / "lib").rename(target)
        return f"{target}: compiled {len(MODULES)} modules in {time.monotonic() - started:.0f} s"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def missing_toolchain() -> str | None:
    """What the build needs and this machine lacks, in one line, or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}) on PATH: apt-get install gcc"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python headers in {include}: apt-get install python3-dev"
    return None


def _compile(work: Path) -> dict[str, str]:
    """Run mypyc and the C compiler in `work`; returns {module: file under work/lib}."""
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    # mypyc names modules after paths relative to the working directory, and type-checks
    # what they import. Work on a copy of the two packages: in an installed copy (ROOT is
    # site-packages) every other installed module would otherwise count as ours.
    source = work / "src"
    for package in ("detector", "probes"):
        ignore = shutil.ignore_patterns("__pycache__", "*.so")
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    (source / "mypy.ini").write_text("[mypy]\nignore_missing_imports = True\n")
    here = Path.cwd()
    os.chdir(source)
    try:
        extensions = mypycify(
            ["--config-file", "mypy.ini", *(f"detector/engine/{name}.py" for name in MODULES)],
            opt_level="3",
            target_dir=str(work / "c"),
        )
    finally:
        os.chdir(here)
    dist = Distribution({"name": "detector-native", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.build_lib = str(work / "lib")
    command.build_temp = str(work / "tmp")
    command.parallel = os.cpu_count() or 1
    dist.run_command("build_ext")
    built = {}
    for extension in extensions:
        relative = Path(*extension.name.split("."))
        found = list((work / "lib" / relative.parent).glob(f"{relative.name}.*"))
        if len(found) != 1:
            raise RuntimeError(f"build produced {found} for {extension.name}")
        built[extension.name] = str(found[0].relative_to(work / "lib"))
    return built


def main(argv: Sequence[str]) -> int:
    if list(argv) != ["build"]:
        print("usage: python -m detector.native build", file=sys.stderr)
        return 2
    print(build())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
