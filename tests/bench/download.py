"""Model download benchmark (JSON): our downloader against plain curl, and bytes lost to a kill.

The fake hub (tests/fixtures/fake_hub.py) runs in its own process so it shares no GIL with the client.

1. throughput: the same file from the same local hub, ``curl -o`` vs our DownloadManager in this process
   (what ``bubble-cli models download`` runs, minus Python start-up): choosing the source, listing, the
   transfer, sha256 + size check and the rename, all timed. Interleaved ``--rounds`` times, who goes first
   alternating; the ratio of medians (curl time / ours) should be >= 0.9. Run twice: hub uncapped
   (loopback, ~1 GB/s here; the hub sends with sendfile, as a real server's kernel does, so that it
   does not take the CPU the client needs: when it copied every block through Python, curl reached
   1.5 GB/s and we 0.76 of it, our sha256 and the hub competing for the second core) and capped at
   ``--capped-mb`` (100 MB/s: a fast real link). ``sha256_mb_s_this_cpu`` is hashlib alone, for
   scale: a download that verifies as it goes cannot beat it.
2. kill at 50 %: ``bubble-cli models download --json`` against a rate-capped hub, SIGKILLed once it has
   reported half the file, then run again. Reported: bytes the killed client had received but not
   written (client side: reported - kept) and bytes the hub sent twice (served in total - file size; this
   includes what sat in the kernel's socket buffers when the client died). Should be <= one chunk (1 MiB:
   the most one read returns; each read is written at once).

    PYTHONPATH=. python tests/bench/download.py [--size-mb 512] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPO = "bench/model"
FILE = "weights.bin"


def _start_hub(folder: Path, rate_bps: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.fake_hub", REPO, str(folder), str(rate_bps)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    return proc, url


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - our own local hub
        return dict(json.loads(r.read()))


def _curl(url: str, work: Path, i: int) -> float:
    out = work / f"curl-{i}" / FILE
    out.parent.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    dt = time.perf_counter() - t0
    shutil.rmtree(out.parent)
    return dt


def _ours(url: str, work: Path, i: int) -> tuple[float, float]:
    """(whole download incl. choosing the source and listing, the transfer alone)"""
    from bubble_desktop.core.models.download import (
        CallbackListener,
        DownloadManager,
        DownloadRequest,
        Progress,
    )
    from bubble_desktop.core.paths import Paths

    home = work / f"home-{i}"
    marks: dict[str, float] = {}

    def on_progress(p: Progress) -> None:
        marks.setdefault(p.state, time.perf_counter())

    manager = DownloadManager(Paths.under(home).ensure(), proxy="")
    t0 = time.perf_counter()
    manager.download(
        DownloadRequest(REPO, files=(FILE,), source=url), CallbackListener(on_progress=on_progress)
    )
    t1 = time.perf_counter()
    shutil.rmtree(home)
    return t1 - t0, t1 - marks["downloading"]


def throughput(folder: Path, size: int, rounds: int, work: Path, rate_bps: float = 0.0) -> dict[str, object]:
    hub, url = _start_hub(folder, rate_bps)
    file_url = f"{url}/{REPO}/resolve/main/{FILE}"
    curl_s: list[float] = []
    ours_s: list[float] = []
    transfer_s: list[float] = []
    try:
        _curl(file_url, work, -1)  # warm the page cache and the hub
        _ours(url, work, -1)
        for i in range(rounds):  # interleaved, alternating who goes first
            for who in ("curl", "ours") if i % 2 == 0 else ("ours", "curl"):
                if who == "curl":
                    curl_s.append(_curl(file_url, work, i))
                else:
                    whole, transfer = _ours(url, work, i)
                    ours_s.append(whole)
                    transfer_s.append(transfer)
    finally:
        hub.terminate()
        hub.wait(10)
    c, o, t = statistics.median(curl_s), statistics.median(ours_s), statistics.median(transfer_s)
    return {
        "file_mb": size / 1e6,
        "hub_rate_cap_mb_s": rate_bps / 1e6 if rate_bps else None,
        "rounds": rounds,
        "curl_s": [round(x, 3) for x in curl_s],
        "ours_s": [round(x, 3) for x in ours_s],
        "ours_transfer_only_s": [round(x, 3) for x in transfer_s],
        "curl_mb_s": round(size / c / 1e6, 1),
        "ours_mb_s": round(size / o / 1e6, 1),
        "ratio_ours_over_curl": round(c / o, 3),
        "ratio_transfer_only_over_curl": round(c / t, 3),
        "target": ">= 0.9",
        "note": "ours = choosing the source, listing, sha256 + size check, rename included; curl = plain -o",
    }


def sha256_speed() -> float:
    """MB/s of hashlib.sha256 on this CPU: the ceiling of any download that verifies as it goes."""
    import hashlib

    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    t0 = time.perf_counter()
    for _ in range(512):
        h.update(block)
    return round(512 * (1 << 20) / (time.perf_counter() - t0) / 1e6, 1)


def heartbeat(folder: Path, size: int, work: Path) -> dict[str, object]:
    """The longest a 5 ms timer on the main thread (a stand-in for the GUI's event loop) waits while the
    download runs in the manager's threads: GIL hand-offs from the download must stay short."""
    from bubble_desktop.core.models.download import DownloadManager, DownloadRequest
    from bubble_desktop.core.paths import Paths

    hub, url = _start_hub(folder)
    try:
        manager = DownloadManager(Paths.under(work / "hb-home").ensure(), proxy="")
        job = manager.start(DownloadRequest(REPO, files=(FILE,), source=url))
        stalls: list[float] = []
        last = time.perf_counter()
        while job.thread is not None and job.thread.is_alive():
            time.sleep(0.005)
            now = time.perf_counter()
            stalls.append((now - last - 0.005) * 1000)
            last = now
        job.wait()
        assert job.error is None, job.error
    finally:
        hub.terminate()
        hub.wait(10)
        shutil.rmtree(work / "hb-home", ignore_errors=True)
    stalls.sort()
    return {
        "file_mb": size / 1e6,
        "ticks": len(stalls),
        "max_stall_ms": round(stalls[-1], 1),
        "p99_stall_ms": round(stalls[int(len(stalls) * 0.99)], 1),
        "target": "max <= 50 ms (the issue's GUI heartbeat figure; this is the core's share of it)",
    }


def kill_at_half(folder: Path, size: int, work: Path, rate_bps: float) -> dict[str, object]:
    hub, url = _start_hub(folder, rate_bps)
    home = work / "kill-home"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "bubble_desktop.cli",
        "--home",
        str(home),
        "models",
        "download",
        REPO,
        "--file",
        FILE,
        "--source",
        url,
        "--json",
    ]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        assert proc.stdout is not None
        reported = 0
        for line in proc.stdout:
            reported = max(reported, int(json.loads(line).get("done_bytes", 0)))
            if reported >= size // 2:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        part = home / "models" / "downloads" / REPO.replace("/", "--") / (FILE + ".part")
        kept = part.stat().st_size
        time.sleep(0.2)
        first = int(_get(f"{url}/_stats")["body_bytes"])  # type: ignore[call-overload]
        _get(f"{url}/_reset?rate_bps=0")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
        rerun_s = time.perf_counter() - t0
        second = int(_get(f"{url}/_stats")["body_bytes"])  # type: ignore[call-overload]
    finally:
        hub.terminate()
        hub.wait(10)
    return {
        "file_mb": size / 1e6,
        "killed_at_reported_bytes": reported,
        "partial_kept_bytes": kept,
        "served_before_kill": first,
        "served_on_rerun": second,
        "rerun_fetched_exactly_the_missing_bytes": second == size - kept,
        "bytes_downloaded_twice": first + second - size,
        "chunk_bytes": 1 << 20,
        "client_received_but_lost": reported - kept,
        "rerun_s_including_python_start": round(rerun_s, 2),
        "target": "bytes_downloaded_twice <= one chunk",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--capped-mb",
        type=float,
        default=100.0,
        help="hub rate cap for the second throughput run, MB/s (a fast real link)",
    )
    ap.add_argument("--kill-rate-mb", type=float, default=50.0, help="hub rate cap for the kill run, MB/s")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bubble-dl-bench-") as tmp:
        work = Path(tmp)
        folder = work / "hub"
        folder.mkdir()
        size = args.size_mb * 1_000_000
        with open(folder / FILE, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1_000_000))
        result = {
            "throughput": throughput(folder, size, args.rounds, work),
            "throughput_hub_capped": throughput(
                folder, size, max(3, args.rounds // 2), work, args.capped_mb * 1e6
            ),
            "sha256_mb_s_this_cpu": sha256_speed(),
            "kill_at_50_percent": kill_at_half(folder, size, work, args.kill_rate_mb * 1e6),
            "main_thread_heartbeat": heartbeat(folder, size, work),
            "cpus": os.cpu_count(),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
