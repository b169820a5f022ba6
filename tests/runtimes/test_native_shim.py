"""The C shim is built once per source version, and its absence never fails an attempt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

from forge.runtimes import native_shim, shim_launch
from forge.runtimes.native_shim import NativeShimUnavailable, ShimChoice
from tests.runtimes.conftest import WAIT, Harness

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@needs_cc
def test_the_build_is_kept_and_a_new_source_builds_a_new_binary(tmp_path: Path) -> None:
    first = native_shim.build(tmp_path)
    inode = first.stat().st_ino
    assert first.name.startswith(native_shim.NATIVE_PREFIX)
    assert native_shim.build(tmp_path) == first
    assert first.stat().st_ino == inode  # not compiled again

    upgraded = tmp_path / "shim.c"
    upgraded.write_bytes(native_shim.SOURCE.read_bytes() + b"\n/* the next version */\n")
    second = native_shim.build(tmp_path, source=upgraded)
    assert second != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name, "shim.c"])


@needs_cc
def test_a_binary_someone_else_could_have_replaced_is_built_again(tmp_path: Path) -> None:
    binary = native_shim.build(tmp_path)
    binary.chmod(0o777)  # writable by anyone: not trusted
    inode = binary.stat().st_ino
    assert native_shim.build(tmp_path) == binary
    assert binary.stat().st_ino != inode
    assert binary.stat().st_mode & 0o022 == 0


@needs_cc
def test_a_source_that_does_not_compile_is_unavailable(tmp_path: Path) -> None:
    broken = tmp_path / "shim.c"
    broken.write_text("int main(void) { return }\n")
    with pytest.raises(NativeShimUnavailable, match="could not build"):
        native_shim.build(tmp_path / "bin", source=broken)
    assert list((tmp_path / "bin").iterdir()) == []  # no half-built file left behind


def test_without_a_compiler_the_python_shim_is_used_with_one_warning(tmp_path: Path) -> None:
    choice = ShimChoice(lambda: tmp_path, compiler="forge-no-such-cc")
    with structlog.testing.capture_logs() as logs:
        first = choice.command()
        second = choice.command()

    assert first == second == native_shim.python_command()
    warnings = [entry for entry in logs if entry["event"] == "runtime.native_shim_unavailable"]
    assert len(warnings) == 1
    assert "forge-no-such-cc" in warnings[0]["reason"]


def test_a_c_shim_that_cannot_start_falls_back_to_the_python_shim(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / f"{native_shim.NATIVE_PREFIX}gone"
    choice = ShimChoice(lambda: tmp_path, compiler="forge-no-such-cc")
    monkeypatch.setattr(shim_launch, "shim_command", lambda: [str(missing)])
    monkeypatch.setattr(native_shim, "shim_fallback", choice.fallback)
    with structlog.testing.capture_logs() as logs:
        outcome = harness.run(harness.spec("sh", "-c", "echo fine")).wait(WAIT)

    assert outcome is not None
    assert outcome.ok  # the attempt ran, under the Python shim
    assert [e["event"] for e in logs].count("runtime.native_shim_unavailable") == 1
    assert choice.command() == native_shim.python_command()
