"""The unit's sandbox: what systemd-analyze security scores, and the devices the daemon still reaches (issue 19, item 16)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "showsay.service"


def directives(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, all values of repeated keys in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_sandbox_asked_for_in_issue_19_is_there():
    keys = directives(UNIT.read_text())
    assert keys["CapabilityBoundingSet"] == [""]  # no capabilities at all
    assert keys["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert keys["SystemCallErrorNumber"] == ["EPERM"]
    assert keys["ProtectProc"] == ["invisible"] and keys["RemoveIPC"] == ["yes"] and keys["PrivateMounts"] == ["yes"]
    assert keys["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0]: v.split()[1] for v in keys["DeviceAllow"]}
    # microphone, camera, teach button, and the Jetson GPU nodes CUDA/TensorRT open
    for device in ("char-alsa", "char-video4linux", "char-gpiochip", "/dev/nvmap", "/dev/nvhost-ctrl-gpu", "char-nvidia*"):
        assert allowed.get(device) == "rw", device
    assert "ProcSubset" not in keys and "MemoryDenyWriteExecute" not in keys  # left out on purpose: docs/daemon.md


def test_systemd_analyze_security_scores_the_unit_low():
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd"
    result = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for showsay\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, f"exposure {match.group(1)} (5.7 before the sandbox of issue 19)"
