"""Device discovery: system RAM and GPU memory, for ``core.memory.fit``.

This adapter only runs the tools and reads the files; every byte of their output is parsed by
pure functions in ``core/memory.py``. Any failure (tool missing, non-zero exit, timeout,
unreadable output) means "no such device", never an exception: a machine without GPUs or
drivers simply runs models on the CPU, as Ollama does.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from pollama.core.memory import (
    Device,
    Inventory,
    cpu_device,
    parse_meminfo,
    parse_nvidia_smi,
    parse_rocm_smi,
    parse_sysctl_memsize,
)

TIMEOUT = 3.0  # seconds per tool; nvidia-smi can hang when the driver is wedged

NVIDIA_SMI = ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.free",
              "--format=csv,noheader,nounits"]
ROCM_SMI = ["rocm-smi", "--showmeminfo", "vram", "--showproductname", "--json"]
SYSCTL_MEMSIZE = ["sysctl", "-n", "hw.memsize"]


def run_tool(argv: list[str], timeout: float = TIMEOUT) -> str | None:
    """stdout of ``argv`` if the binary exists and exits 0 within ``timeout``, else None."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *argv[1:]], capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (ValueError, OSError, AttributeError):
        return None
    return value if value > 0 else None


def cpu(*, darwin: bool = False) -> Device | None:
    """System RAM: /proc/meminfo (MemAvailable) on Linux; otherwise ``sysctl hw.memsize``
    (macOS) or ``os.sysconf`` pages, with free memory from ``SC_AVPHYS_PAGES`` where it exists."""
    text = _read("/proc/meminfo")
    if text is not None and (dev := parse_meminfo(text)) is not None:
        return dev
    page = _sysconf("SC_PAGE_SIZE")
    total: int | None = None
    if darwin and (out := run_tool(SYSCTL_MEMSIZE)) is not None:
        total = int(out.strip()) if out.strip().isdigit() else None
    if total is None and page is not None and (pages := _sysconf("SC_PHYS_PAGES")) is not None:
        total = pages * page
    if total is None:
        return None
    avail = _sysconf("SC_AVPHYS_PAGES")
    return cpu_device(total, avail * page if avail is not None and page is not None else None)


def discover(*, timeout: float = TIMEOUT) -> Inventory:
    """Every memory pool on this machine now. GPUs: NVIDIA via nvidia-smi, AMD via rocm-smi,
    Apple silicon's unified memory as one ``metal`` device."""
    darwin = platform.system() == "Darwin"
    devices: list[Device] = []
    if (ram := cpu(darwin=darwin)) is not None:
        devices.append(ram)
    if (out := run_tool(NVIDIA_SMI, timeout)) is not None:
        devices.extend(parse_nvidia_smi(out))
    if (out := run_tool(ROCM_SMI, timeout)) is not None:
        devices.extend(parse_rocm_smi(out))
    if darwin and platform.machine() == "arm64" and (out := run_tool(SYSCTL_MEMSIZE, timeout)):
        if (metal := parse_sysctl_memsize(out)) is not None:
            devices.append(metal)
    return Inventory(devices=tuple(devices))
