"""systemd/mahnwerk.service: valid for systemd, hardened, and in step with mahnwerk and the README.

`systemd-analyze verify` exits 0 even when it ignores a misspelt directive, so the
tests read its stderr: any line there is a failure. A directive systemd ignores
would silently remove a piece of the hardening.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from mahnwerk.rules import Imap, Smtp

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "mahnwerk.service"
README = ROOT / "README.md"
EXEC = "/opt/mahnwerk/venv/bin/mahnwerk"

# Hardening switches the issue asks for, each simply on.
SWITCHED_ON = (
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "NoNewPrivileges",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
)

# What the issue asks of the unit, directive by directive (a list where it repeats).
EXPECTED: dict[str, list[str]] = {
    "Type": ["notify"],
    "NotifyAccess": ["main"],
    "ExecStart": [f"{EXEC} --config /etc/mahnwerk/rules.yaml --state-dir /var/lib/mahnwerk run"],
    "ExecReload": ["/bin/kill -HUP $MAINPID"],
    "Restart": ["on-failure"],
    "DynamicUser": ["yes"],
    "StateDirectory": ["mahnwerk"],
    "ConfigurationDirectory": ["mahnwerk"],
    "UMask": ["0077"],
    "LoadCredential": [
        f"{Smtp.model_fields['credential'].default}:/etc/mahnwerk/smtp-password",
        f"{Imap.model_fields['credential'].default}:/etc/mahnwerk/imap-password",
    ],
    "Environment": ["PYTHONUNBUFFERED=1"],
    "CapabilityBoundingSet": [""],
    "AmbientCapabilities": [""],
    "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
    "SystemCallArchitectures": ["native"],
    "ProtectSystem": ["strict"],
    **{key: ["yes"] for key in SWITCHED_ON},
}


def directives(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of the [Service] section, in order (keys may repeat)."""
    found: dict[str, list[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            found[key.strip()].append(value.strip())
    return found


def systemd_analyze() -> str:
    """The command, or a skip when this machine cannot run it (a failure in CI)."""
    found = shutil.which("systemd-analyze")
    problem = "systemd-analyze is not installed (apt-get install systemd)"
    if found is not None:
        probe = subprocess.run([found, "--version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return found
        problem = f"systemd-analyze does not run here: {probe.stderr.strip()}"
    # scripts/test.sh installs it; only a bare local run may skip.
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a stub: verify insists that the binary exists."""
    stub = tmp_path / "mahnwerk"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert EXEC in text
    path = tmp_path / "units" / "mahnwerk.service"
    path.parent.mkdir()
    path.write_text(text.replace(EXEC, str(stub)), encoding="utf-8")
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verify_has_nothing_to_say(unit_copy: Path) -> None:
    proc = verify(unit_copy)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_verify_would_notice_a_directive_systemd_ignores(unit_copy: Path) -> None:
    # The test above has teeth: a typo that weakens the unit shows up on stderr.
    text = unit_copy.read_text(encoding="utf-8")
    unit_copy.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    proc = verify(unit_copy)
    assert "strikt" in proc.stderr


def test_security_exposure(unit_copy: Path) -> None:
    proc = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "offline" in proc.stderr and proc.returncode != 0:
        pytest.skip(f"this systemd-analyze has no --offline: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    overall = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", proc.stdout)
    assert overall, proc.stdout
    print(f"systemd-analyze security: exposure {overall[1]} {overall[2]}")
    assert overall[2] != "UNSAFE"


def test_the_unit_has_what_the_issue_asks_for() -> None:
    found = directives(UNIT.read_text(encoding="utf-8"))
    assert {key: found.get(key) for key in EXPECTED} == EXPECTED
    assert int(found["WatchdogSec"][0].removesuffix("s")) >= 10
    assert found["SystemCallFilter"][0] == "@system-service"


def test_the_readme_installs_what_the_unit_expects() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Running as a service", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "/opt/mahnwerk/venv",
        "/etc/mahnwerk/rules.yaml",
        "/etc/mahnwerk/smtp-password",
        "/etc/mahnwerk/imap-password",
        "systemd/mahnwerk.service",
        "systemctl enable --now mahnwerk",
        "systemctl reload mahnwerk",
        "mahnwerk run",
    ):
        assert needed in section, needed


# Runs in a fresh interpreter: turns on PR_SET_MDWE (what MemoryDenyWriteExecute=yes
# sets up, with seccomp there), which execve keeps, then becomes the real check.
_LAUNCH = """
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
_EVERYTHING = """
import importlib, mmap, pkgutil, ssl, sys
import mahnwerk
for module in pkgutil.walk_packages(mahnwerk.__path__, "mahnwerk."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit("writable code was allowed: the test proves nothing")
ssl.create_default_context()
from mahnwerk.cli import main
main(["--config", sys.argv[1], "--state-dir", sys.argv[2], "check"])
"""


def test_mahnwerk_runs_without_writable_code(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes kills a process that maps memory writable and executable
    (a JIT, ctypes callbacks): every module of mahnwerk must load and work without."""
    args = ["-c", _EVERYTHING, str(ROOT / "rules.yaml"), str(tmp_path / "state")]
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *args], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3) to try it with")
    assert proc.returncode == 0, proc.stderr
    assert "rules.yaml: OK" in proc.stdout
