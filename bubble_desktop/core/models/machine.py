"""What this machine can run: RAM, free GPU memory, free disk; fit verdicts and a recommendation.

psutil is used when installed, else /proc/meminfo (Linux), GlobalMemoryStatusEx (Windows) or sysctl
(macOS). GPU memory comes from torch.cuda only when torch is already importable and sees a CUDA
device: no CUDA driver is ever required.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bubble_desktop.core.models.catalog import Catalog, CatalogEntry, Kind

log = logging.getLogger(__name__)

Verdict = Literal["runs well", "tight", "too big"]
GB = 1024**3
# Above this size a chat model answers at only a few tokens a second on a typical laptop CPU.
CPU_CHAT_PARAMS_B = 4.0


@dataclass(frozen=True)
class Machine:
    ram_total_gb: float
    ram_available_gb: float
    vram_free_gb: float = 0.0  # 0: no usable GPU
    gpu_name: str = ""
    disk_free_gb: float = float("inf")

    def to_dict(self) -> dict[str, object]:
        return {
            "ram_total_gb": round(self.ram_total_gb, 2),
            "ram_available_gb": round(self.ram_available_gb, 2),
            "vram_free_gb": round(self.vram_free_gb, 2),
            "gpu_name": self.gpu_name,
            "disk_free_gb": round(self.disk_free_gb, 2) if self.disk_free_gb != float("inf") else None,
        }


def ram_bytes() -> tuple[int, int]:
    """(total, available) physical memory in bytes; (0, 0) when it cannot be read."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        pass
    if sys.platform.startswith("linux"):
        try:
            info: dict[str, int] = {}
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
            return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
        except (OSError, ValueError, IndexError):
            return 0, 0
    if sys.platform == "win32":

        class MEMORYSTATUSEX(ctypes.Structure):
            _fields_ = [
                ("dwLength", ctypes.c_ulong),
                ("dwMemoryLoad", ctypes.c_ulong),
                ("ullTotalPhys", ctypes.c_ulonglong),
                ("ullAvailPhys", ctypes.c_ulonglong),
                ("ullTotalPageFile", ctypes.c_ulonglong),
                ("ullAvailPageFile", ctypes.c_ulonglong),
                ("ullTotalVirtual", ctypes.c_ulonglong),
                ("ullAvailVirtual", ctypes.c_ulonglong),
                ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
            ]

        stat = MEMORYSTATUSEX()
        stat.dwLength = ctypes.sizeof(MEMORYSTATUSEX)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(stat)):  # type: ignore[attr-defined]
            return int(stat.ullTotalPhys), int(stat.ullAvailPhys)
        return 0, 0
    if sys.platform == "darwin":
        try:
            total = int(
                subprocess.run(
                    ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=2
                ).stdout.strip()
            )
            return total, total // 2  # no cheap "available" figure without psutil
        except (OSError, ValueError, subprocess.SubprocessError):
            return 0, 0
    return 0, 0


def _vram() -> tuple[float, str]:
    """(free GB, device name) of the first CUDA GPU, or (0, "") without torch or CUDA."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return 0.0, ""
    try:
        import torch

        if not torch.cuda.is_available():
            return 0.0, ""
        free, _total = torch.cuda.mem_get_info(0)
        return free / GB, str(torch.cuda.get_device_name(0))
    except Exception as exc:  # a broken driver must not break the catalog
        log.info("no GPU memory figure: %s", exc)
        return 0.0, ""


def disk_free_gb(path: str | os.PathLike[str]) -> float:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free / GB
    except OSError:
        return float("inf")


def detect(models_dir: str | os.PathLike[str] | None = None, *, gpu: bool = True) -> Machine:
    """Measure this machine. ``gpu=False`` skips torch (fast; for the CLI's catalog listing)."""
    total, avail = ram_bytes()
    vram, name = _vram() if gpu else (0.0, "")
    disk = disk_free_gb(models_dir) if models_dir is not None else float("inf")
    return Machine(total / GB, avail / GB, vram, name, disk)


def fit(entry: CatalogEntry, machine: Machine) -> Verdict:
    """How well ``entry`` runs here: on the GPU when its free memory holds it, else on the CPU."""
    if entry.size_bytes / GB > machine.disk_free_gb:
        return "too big"
    if entry.vram_gb > 0 and machine.vram_free_gb >= entry.vram_gb * 1.1:
        return "runs well"
    total = machine.ram_total_gb
    if total <= 0:
        return "tight"  # unknown RAM: never claim it runs well
    slow_on_cpu = entry.kind == "chat" and entry.params_b > CPU_CHAT_PARAMS_B
    if entry.ram_gb <= min(total * 0.6, machine.ram_available_gb + total * 0.2) and not slow_on_cpu:
        return "runs well"
    if entry.ram_gb <= total * 0.85 or (entry.vram_gb > 0 and machine.vram_free_gb >= entry.vram_gb * 0.9):
        return "tight"
    return "too big"


def fit_reason(entry: CatalogEntry, machine: Machine) -> str:
    """The verdict in words, for a tooltip or the CLI."""
    verdict = fit(entry, machine)
    if entry.size_bytes / GB > machine.disk_free_gb:
        return f"{verdict}: needs {entry.size_bytes / GB:.1f} GB of disk, {machine.disk_free_gb:.1f} GB free"
    gpu = f", GPU {machine.vram_free_gb:.1f} GB free" if machine.vram_free_gb else ""
    if verdict == "tight" and entry.kind == "chat" and entry.params_b > CPU_CHAT_PARAMS_B:
        gpu += "; slow on a CPU"
    return f"{verdict}: needs ~{entry.ram_gb:g} GB RAM (this machine {machine.ram_total_gb:.1f} GB){gpu}"


def recommend(
    catalog: Catalog, machine: Machine, kind: Kind = "chat", language: str = "zh"
) -> list[CatalogEntry]:
    """Entries of ``kind`` that run here, best first: in ``language``, runs well before tight, then the
    biggest (the most capable) chat model, GGUF before transformers (it runs faster on a CPU); for
    embeddings the smallest (indexing speed on a CPU matters more than the last point of quality).
    The first one is what "Download the recommended model" fetches. Too-big entries are left out."""
    rank = {"runs well": 0, "tight": 1}
    fitting = [(e, fit(e, machine)) for e in catalog.of_kind(kind)]
    usable = [(e, v) for e, v in fitting if v in rank]

    def key(item: tuple[CatalogEntry, Verdict]) -> tuple[int, int, int, int, float]:
        e, v = item
        speaks = language in e.languages or (language not in ("zh", "en") and "multi" in e.languages)
        return (
            0 if speaks else 1,
            rank[v],
            0 if e.format == "gguf" or kind == "embedding" else 1,
            1 if e.remote_code else 0,
            e.params_b if kind == "embedding" else -e.params_b,
        )

    return [e for e, _ in sorted(usable, key=key)]
