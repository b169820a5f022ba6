"""A small test image built from this machine's own files: no registry is needed.

The image holds a shell and a few coreutils with the libraries they load, laid out as the host
has them (merged /usr). Its tar is built in memory, deterministically (fixed owners and times),
and tagged with the hash of its content, so that it is imported once per machine and again
only when the host's binaries change.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile

__all__ = ["PROGRAMS", "ensure_image"]

PROGRAMS = ("sh", "dash", "cat", "echo", "env", "head", "ls", "pwd", "sleep", "tail", "touch")
REPOSITORY = "localhost/forge-test"
_MERGED = ("bin", "lib", "lib64", "sbin")  # top-level directories that are links into /usr
_LIBRARY = re.compile(r"(/\S+\.so[.\d]*)")


def _needed() -> list[str]:
    programs = [p for name in PROGRAMS if (p := shutil.which(name, path="/usr/bin:/bin"))]
    listing = subprocess.run(["ldd", *programs], capture_output=True, text=True, check=False)
    libraries = set(_LIBRARY.findall(listing.stdout))
    return sorted({*programs, *libraries})


def _in_image(path: str) -> str:
    top = path.strip("/").split("/", 1)[0]
    return f"usr/{path.strip('/')}" if top in _MERGED else path.strip("/")


def _tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname = kind, mode, len(data), target
            tar.addfile(info, io.BytesIO(data) if data else None)

        directories = {"tmp", "usr/bin", "usr/lib", "usr/lib64", "usr/sbin"}
        files = {_in_image(p): p for p in _needed()}
        for name in files:
            parts = name.split("/")[:-1]
            directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        for name in sorted(directories):
            add(name, tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755)
        for top in _MERGED:
            add(top, tarfile.SYMTYPE, 0o777, target=f"usr/{top}")
        for name, source in sorted(files.items()):
            with open(os.path.realpath(source), "rb") as f:
                add(name, tarfile.REGTYPE, 0o755, f.read())
    return buffer.getvalue()


def ensure_image(engine: str = "podman") -> str:
    """The test image's reference, imported into `engine` unless it has it already."""
    data = _tarball()
    tag = f"{REPOSITORY}:{hashlib.sha256(data).hexdigest()[:16]}"
    found = subprocess.run([engine, "image", "exists", tag], capture_output=True, check=False)
    if found.returncode != 0:
        subprocess.run(
            [engine, "import", "-", tag], input=data, capture_output=True, check=True, timeout=120
        )
    return tag
