"""The child process that runs one GGUF model with llama.cpp (see :mod:`.llamacpp_backend`).

Kept apart, and light, on purpose: the spawned child imports only this module, the error classes,
``xllamacpp`` and ``psutil``. No pydantic settings, no ``gguf`` reader and so no numpy: the parent
reads the header and sends the :class:`GgufFacts`. That keeps the child's own memory (before any
model) at about half of what it was with the backend module's imports (tests/bench/llamacpp.py).
The offload and memory plans live here too, as plain functions of the facts, testable without a GPU.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubble_desktop.core.errors import ModelError, OutOfMemoryError, UserFacingError
from bubble_desktop.core.native import peak_rss_bytes

log = logging.getLogger(__name__)

DEFAULT_GGUF_CONTEXT = 4096


@dataclass(frozen=True)
class GgufFacts:
    """What the header of a GGUF file says (read without loading the weights)."""

    path: str
    arch: str
    name: str
    context_length: int
    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    file_size: int
    has_chat_template: bool
    # bytes of the weights of each repeating block (blk.N.*) and of the output head (output.weight,
    # or the tied token embedding), for planning how many layers fit on a GPU
    layer_bytes: tuple[int, ...] = ()
    output_bytes: int = 0

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer: 2 × layers × ctx × (embd × kv_heads / heads) × 2 bytes."""
        heads = max(self.n_head, 1)
        kv_dim = self.n_embd * max(self.n_head_kv, 1) // heads
        return 2 * self.n_layers * n_ctx * kv_dim * 2


def physical_cores() -> int:
    """The physical cores, at most the CPUs this process may run on (a container or ``taskset``
    limits those; more threads than CPUs would make llama.cpp's threads wait for each other)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    n = n or os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        n = min(n, len(os.sched_getaffinity(0)) or n)
    return max(1, n)


def performance_cores() -> int:
    """llama.cpp's default thread count: the physical cores of the fastest kind.

    On a hybrid CPU (Intel 12th generation and later, Core Ultra, Apple M-series) llama.cpp's threads
    wait for each other at every step, so a thread on a slower efficiency core holds up those on the
    performance cores. llama.cpp's own default counts only the performance cores on Linux (its
    ``cpu_get_num_math``); this does the same on Windows and macOS too. On a CPU with one kind of
    core it is the number of physical cores. (Not measured here: this machine has one kind.)"""
    import sys

    n: int | None = None
    try:
        if sys.platform == "win32":
            n = _windows_performance_cores()
        elif sys.platform == "darwin":
            n = _mac_performance_cores()
        elif sys.platform.startswith("linux"):
            n = linux_performance_cores(Path("/sys/devices"))
    except Exception:  # noqa: BLE001 - a count we cannot read is the physical cores
        log.debug("reading the performance cores failed", exc_info=True)
    return min(n, physical_cores()) if n and n > 0 else physical_cores()  # within the affinity


def _cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's CPU list format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            first, last = part.split("-")
            cpus.extend(range(int(first), int(last) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def linux_performance_cores(devices: Path) -> int | None:
    """Physical performance cores of a hybrid Intel CPU from sysfs (``devices/cpu_core/cpus`` lists
    their logical CPUs; SMT siblings share a core), or None when the CPU is not hybrid."""
    listed = devices / "cpu_core" / "cpus"
    if not listed.is_file():
        return None
    cores = set()
    for cpu in _cpu_list(listed.read_text()):
        topology = devices / "system" / "cpu" / f"cpu{cpu}" / "topology"
        siblings = topology / "core_cpus_list"
        if not siblings.is_file():
            siblings = topology / "thread_siblings_list"
        cores.add(siblings.read_text().strip() if siblings.is_file() else str(cpu))
    return len(cores) or None


def windows_core_classes(buffer: bytes) -> list[int]:
    """The EfficiencyClass of every physical core in what GetLogicalProcessorInformationEx returns
    for RelationProcessorCore: SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX records (Relationship and
    Size as DWORDs, then PROCESSOR_RELATIONSHIP: Flags, EfficiencyClass, ...)."""
    import struct

    classes = []
    offset = 0
    while offset + 10 <= len(buffer):
        relationship, size = struct.unpack_from("<II", buffer, offset)
        if size <= 0:
            break
        if relationship == 0:  # RelationProcessorCore
            classes.append(buffer[offset + 9])
        offset += size
    return classes


def _windows_performance_cores() -> int | None:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    length = ctypes.c_uint32(0)
    kernel32.GetLogicalProcessorInformationEx(0, None, ctypes.byref(length))
    if not length.value:
        return None
    buffer = ctypes.create_string_buffer(length.value)
    if not kernel32.GetLogicalProcessorInformationEx(0, buffer, ctypes.byref(length)):
        return None
    classes = windows_core_classes(buffer.raw[: length.value])
    # a hybrid CPU: performance cores have the higher class; one kind of core: all are class 0
    return sum(1 for c in classes if c == max(classes)) if classes else None


def _mac_performance_cores() -> int | None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    value = ctypes.c_int(0)
    size = ctypes.c_size_t(ctypes.sizeof(value))
    # Apple silicon: perflevel0 is the performance cluster (absent on Intel Macs)
    if libc.sysctlbyname(b"hw.perflevel0.physicalcpu", ctypes.byref(value), ctypes.byref(size), None, 0):
        return None
    return value.value


# VRAM kept free for llama.cpp's compute buffers, the driver and whatever else draws on the card
_VRAM_RESERVE = 512 * 2**20
_VRAM_RESERVE_SHARE = 0.08


def plan_gpu_layers(facts: GgufFacts, n_ctx: int, free_vram: int, requested: int = -1) -> int:
    """How many layers llama.cpp puts on the GPU (its ``n_gpu_layers``: the last N blocks, and with
    ``n_layers + 1`` the output head too).

    ``requested`` >= 0 is the user's own number (capped at the model's). -1 ("auto") offloads as many
    blocks as fit in ``free_vram`` after a reserve, each block costing its weights plus its share of
    the KV cache; the head goes last, once every block fits."""
    total = facts.n_layers + 1
    if requested >= 0:
        return min(requested, total)
    if free_vram <= 0 or facts.n_layers <= 0:
        return 0
    budget = free_vram - max(_VRAM_RESERVE, int(free_vram * _VRAM_RESERVE_SHARE))
    budget -= facts.n_embd * n_ctx * 4  # the per-token activations of one batch, roughly
    layer_bytes = facts.layer_bytes or (facts.file_size // facts.n_layers,) * facts.n_layers
    kv_per_layer = facts.kv_cache_bytes(n_ctx) // facts.n_layers
    layers = 0
    for nbytes in reversed(layer_bytes):  # llama.cpp offloads the last blocks first
        budget -= nbytes + kv_per_layer
        if budget < 0:
            return layers
        layers += 1
    return total if budget >= facts.output_bytes else layers


def gpu_weight_bytes(facts: GgufFacts, gpu_layers: int, n_ctx: int) -> int:
    """Bytes of weights and KV cache that ``gpu_layers`` move off the CPU side."""
    blocks = min(gpu_layers, facts.n_layers)
    layer_bytes = facts.layer_bytes or (facts.file_size // max(facts.n_layers, 1),) * facts.n_layers
    moved = sum(layer_bytes[len(layer_bytes) - blocks :]) if blocks else 0
    moved += facts.kv_cache_bytes(n_ctx) * blocks // max(facts.n_layers, 1)
    if gpu_layers > facts.n_layers:
        moved += facts.output_bytes
    return moved


def check_memory(facts: GgufFacts, n_ctx: int, gpu_layers: int = 0) -> None:
    """Refuse to load when what stays in RAM (weights + KV cache of the layers not on a GPU) clearly
    exceeds the free RAM, instead of swapping the machine to death."""
    import psutil

    need = facts.file_size + facts.kv_cache_bytes(n_ctx) + 64 * 2**20  # + compute buffers, roughly
    need -= gpu_weight_bytes(facts, gpu_layers, n_ctx)
    free = psutil.virtual_memory().available
    if need > free:
        smaller = max(512, n_ctx // 4)
        raise OutOfMemoryError(
            f"{Path(facts.path).name} needs about {need / 2**30:.1f} "
            f"GB (weights {facts.file_size / 2**30:.1f} GB "
            f"+ memory for {n_ctx:,} tokens of context) but only {free / 2**30:.1f} GB is free.",
            f"Set the context window to {smaller:,} in Settings → Model, close other programs, "
            "or use a smaller quantization of the model (e.g. Q4_K_M instead of Q8_0).",
        )


def _gpu_device() -> tuple[str, int]:
    """('', 0) when llama.cpp has only the CPU; else the first GPU's name and its free memory."""
    import xllamacpp

    try:
        for dev in xllamacpp.get_device_info():
            if "CPU" not in str(dev.get("type", "")) and str(dev.get("name", "")) != "CPU":
                return str(dev.get("name", "GPU")), int(dev.get("memory_free", 0) or 0)
    except Exception:
        log.debug("get_device_info failed", exc_info=True)
    return "", 0


# --- the child process -------------------------------------------------------------------------


COALESCE_S = 0.02


class _ChunkSender:
    """llama.cpp's per-token callback, coalesced: the first chunk goes at once, then at most one
    message per ``COALESCE_S``, so the app process wakes ~50 times a second rather than once per
    token and takes less CPU from llama.cpp's threads; the last chunk (finish, timings) at once.
    Returns True (stop) once the app has cancelled this request."""

    def __init__(self, conn: Any, cancel_id: Any, rid: int) -> None:
        self.conn, self.cancel_id, self.rid = conn, cancel_id, rid
        self.pending: list[Any] = []
        self.last_send = 0.0

    def __call__(self, chunk: Any) -> bool:
        self.pending.append(chunk)
        now = time.monotonic()
        if now - self.last_send >= COALESCE_S or _is_last(chunk):
            self.flush()
            self.last_send = now
        return bool(self.cancel_id.value >= self.rid)

    def flush(self) -> None:
        if self.pending:
            self.conn.send(("chunks", self.pending))
            self.pending = []


def _is_last(chunk: Any) -> bool:
    if not isinstance(chunk, dict):
        return True
    if "error" in chunk or "timings" in chunk or "usage" in chunk:
        return True
    return any(c.get("finish_reason") for c in chunk.get("choices") or () if isinstance(c, dict))


def serve(conn: Any, cancel_id: Any, path: str, options: dict[str, Any]) -> None:
    """Child-process entry: load the GGUF with llama.cpp, then answer requests from ``conn``.

    Messages in: ``(kind, request id, payload)`` with kind chat | complete | rss | quit. Out:
    ``("progress", (fraction, text))`` while loading, then ``("ready", facts dict)`` or
    ``("failed", (error class name, message, hint))``; per chat request ``("chunks", [dict, …])``…
    and ``("done", result)``; per other request one ``(kind, reply)`` or ``("error", text)``.
    """
    logging.basicConfig(level=options.get("log_level", logging.WARNING))
    rss_start = peak_rss_bytes()  # the interpreter and our imports, before any model
    try:
        server, ready = _load_in_child(conn, path, options)
        ready["rss_start"] = rss_start
    except UserFacingError as exc:
        conn.send(("failed", (type(exc).__name__, exc.message, exc.hint)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises a UserFacingError
        conn.send(
            (
                "failed",
                (
                    "ModelError",
                    f"llama.cpp could not load {Path(path).name}: {str(exc)[:200]}",
                    "Try a smaller context window, or another quantization of the model.",
                ),
            )
        )
        return
    conn.send(("ready", ready))
    while True:
        try:
            kind, rid, payload = conn.recv()
        except (EOFError, OSError):
            return  # the app has gone
        if kind == "quit":
            return
        try:
            # a chat request, or a raw prompt for a file without a chat template
            raw = isinstance(payload, dict) and "prompt" in payload
            handle = server.handle_completions if raw else server.handle_chat_completions
            if kind == "chat":
                send = _ChunkSender(conn, cancel_id, rid)
                result = handle(payload, send)
                send.flush()
                conn.send(("done", result if isinstance(result, dict) and "error" in result else None))
            elif kind == "complete":
                conn.send(("complete", handle(payload)))
            elif kind == "rss":
                conn.send(("rss", peak_rss_bytes()))
            else:
                conn.send(("error", f"unknown request {kind!r}"))
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # noqa: BLE001 - one failed request must not end the model
            log.exception("llama.cpp request failed")
            conn.send(("done", {"error": str(exc)}) if kind == "chat" else ("error", str(exc)))


def _load_in_child(conn: Any, path: str, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    def progress(fraction: float, text: str) -> None:
        conn.send(("progress", (fraction, text)))

    facts: GgufFacts = options["facts"]  # read by the parent: this process never imports gguf/numpy
    context_window = int(options.get("context_window") or 0)
    n_ctx = (
        context_window
        if context_window > 0
        else min(facts.context_length or DEFAULT_GGUF_CONTEXT, DEFAULT_GGUF_CONTEXT)
    )
    progress(0.1, "Loading llama.cpp")
    import xllamacpp

    device = str(options.get("device") or "auto")
    gpu_name, free_vram = ("", 0) if device == "cpu" else _gpu_device()
    if device in ("cuda", "mps") and not gpu_name:
        raise ModelError(
            f"{device.upper()} was chosen but this llama.cpp build has no GPU support.",
            "Set the device to Auto or CPU.",
        )
    requested = int(options.get("gpu_layers", -1))
    gpu_layers = plan_gpu_layers(facts, n_ctx, free_vram, requested) if gpu_name else 0
    check_memory(facts, n_ctx, gpu_layers)
    threads = int(options.get("threads") or 0)
    n_threads = threads if threads > 0 else performance_cores()
    params = xllamacpp.CommonParams()
    params.model.path = facts.path
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    params.n_gpu_layers = gpu_layers
    params.fit_params = False  # our plan above decides, so the status bar names what really runs
    params.cache_prompt = True
    params.use_jinja = True
    params.warmup = False
    # llama.cpp logs every request at its default verbosity (3) to stderr; errors only unless debugging
    params.verbosity = 3 if options.get("log_level", logging.WARNING) <= logging.DEBUG else 0
    progress(0.2, "Mapping the weights")
    plain = not facts.has_chat_template
    try:
        server = xllamacpp.Server(params)
    except Exception:
        if plain:
            raise
        # llama.cpp parses the file's chat template when it starts and gives up on one it cannot
        # use (Jinja it does not support, a template that raises): start on a built-in template
        # instead, never used, since the app then sends the plain instruction format as raw prompts
        log.info("llama.cpp cannot use the chat template of %s: the plain format instead", facts.path)
        params.chat_template = "chatml"
        server = xllamacpp.Server(params)
        plain = True
    ready = {
        "facts": facts,
        "n_ctx": n_ctx,
        "gpu_name": gpu_name,
        "gpu_layers": gpu_layers,
        "threads": n_threads,
        "template_unusable": plain and facts.has_chat_template,
        "peak_rss": peak_rss_bytes(),
    }
    return server, ready
