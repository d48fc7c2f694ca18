"""llama.cpp's default thread count: the performance cores of a hybrid CPU, else the physical cores
(sysfs trees and GetLogicalProcessorInformationEx buffers written here, as those machines report them)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from bubble_desktop.core.llm import llamacpp_child
from bubble_desktop.core.llm.llamacpp_child import (
    linux_performance_cores,
    performance_cores,
    physical_cores,
    windows_core_classes,
)


def _sysfs(root: Path, p_cores: int, e_cores: int, smt: bool) -> Path:
    """/sys/devices of a hybrid Intel CPU: P-cores first (two logical CPUs each with SMT), then E-cores."""
    cpu = 0
    p_cpus: list[int] = []
    for _ in range(p_cores):
        siblings = [cpu, cpu + 1] if smt else [cpu]
        for c in siblings:
            topo = root / "system" / "cpu" / f"cpu{c}" / "topology"
            topo.mkdir(parents=True)
            (topo / "core_cpus_list").write_text("-".join(map(str, siblings)) if smt else str(c))
        p_cpus += siblings
        cpu += len(siblings)
    first_e = cpu
    for _ in range(e_cores):
        topo = root / "system" / "cpu" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_cpus_list").write_text(str(cpu))
        cpu += 1
    (root / "cpu_core").mkdir()
    (root / "cpu_core" / "cpus").write_text(f"0-{p_cpus[-1]}\n")
    (root / "cpu_atom").mkdir()
    (root / "cpu_atom" / "cpus").write_text(f"{first_e}-{cpu - 1}\n")
    return root


@pytest.mark.parametrize("p_cores, e_cores, smt", [(6, 4, True), (8, 16, True), (2, 8, False)])
def test_a_hybrid_intel_cpu_on_linux_counts_its_performance_cores(
    tmp_path: Path, p_cores: int, e_cores: int, smt: bool
) -> None:
    assert linux_performance_cores(_sysfs(tmp_path, p_cores, e_cores, smt)) == p_cores


def test_a_cpu_with_one_kind_of_core_has_no_performance_count_on_linux(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()  # what a non-hybrid CPU's sysfs has instead of cpu_core/cpu_atom
    assert linux_performance_cores(tmp_path) is None


def _records(classes: list[int]) -> bytes:
    """SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX records for RelationProcessorCore (0), one per core,
    with a cache record (2) between them as Windows mixes them in other queries."""
    out = b""
    for i, eff in enumerate(classes):
        body = struct.pack("<BB20sH", 1, eff, b"\0" * 20, 1) + struct.pack("<QH6x", 1 << i, 0)
        out += struct.pack("<II", 0, 8 + len(body)) + body
        if i == 0:
            cache = b"\0" * 40
            out += struct.pack("<II", 2, 8 + len(cache)) + cache
    return out


def test_windows_processor_records_give_each_cores_efficiency_class() -> None:
    classes = [1] * 6 + [0] * 8  # a 6P+8E Core i5-13600K
    assert windows_core_classes(_records(classes)) == classes
    assert windows_core_classes(b"") == []


def test_the_default_is_the_performance_cores_and_falls_back_to_physical(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(llamacpp_child, "linux_performance_cores", lambda devices: 6)
    monkeypatch.setattr(llamacpp_child, "physical_cores", lambda: 10)  # a 6P+4E i5-13400
    monkeypatch.setattr("sys.platform", "linux")
    assert performance_cores() == 6
    monkeypatch.setattr(llamacpp_child, "physical_cores", lambda: 4)  # a container with 4 CPUs
    assert performance_cores() == 4
    monkeypatch.setattr(llamacpp_child, "linux_performance_cores", lambda devices: None)
    assert performance_cores() == 4

    def broken(devices: Path) -> int:
        raise OSError("sysfs unreadable")

    monkeypatch.setattr(llamacpp_child, "linux_performance_cores", broken)
    assert performance_cores() == 4


def test_this_machine_gets_a_sane_count() -> None:
    assert 1 <= performance_cores() <= physical_cores()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux: CPU affinity")
def test_threads_never_exceed_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container (or taskset) with one CPU on a many-core host: one thread, not one per core."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert physical_cores() == 1
