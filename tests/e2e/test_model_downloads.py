"""Model downloads end to end against our own hub on 127.0.0.1 (tests/fixtures/fake_hub.py).

Real clients throughout: huggingface_hub for the protocol check, our httpx downloader in-process and
``bubble-cli models download`` in a subprocess (killed half-way for the resume case), llama.cpp for the
downloaded GGUF. No mocks; the only stand-in is a free-space probe for the full-disk case.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bubble_desktop.core.models.catalog import parse_catalog
from bubble_desktop.core.models.download import (
    CallbackListener,
    DownloadCancelled,
    DownloadManager,
    DownloadRequest,
    IntegrityError,
    NotEnoughSpaceError,
    Progress,
)
from bubble_desktop.core.models.sources import DownloadError, SourceConfig, SourceUnreachableError
from bubble_desktop.core.paths import Paths
from tests.fixtures.fake_hub import FakeHub, ForwardProxy

ROOT = Path(__file__).resolve().parents[2]
REPO = "tiny-org/tiny-model"
MB = 1_000_000


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there now: connections are refused at once
    return port


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    h = FakeHub()
    h.add_repo(
        REPO,
        {
            "config.json": b'{"model_type": "llama"}',
            "tokenizer.json": b'{"version": "1.0"}',
            "model.safetensors": os.urandom(3 * MB),
            "README.md": b"# not needed",
            ".gitattributes": b"*.safetensors filter=lfs",
        },
    )
    h.start()
    yield h
    h.stop()


@pytest.fixture
def paths(bubble_home: Path) -> Paths:
    return Paths.under(bubble_home).ensure()


def _sources(paths: Paths, order: list[str], **endpoints: str) -> None:
    (paths.config_dir / "model_sources.json").write_text(
        json.dumps({"order": order, "endpoints": {k.replace("_", "-"): v for k, v in endpoints.items()}}),
        encoding="utf-8",
    )


def _manager(paths: Paths, **kw: object) -> DownloadManager:
    return DownloadManager(paths, proxy="", **kw)  # type: ignore[arg-type]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_fake_hub_speaks_the_huggingface_hub_protocol(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub itself (endpoint=, local_dir=) downloads from the fake hub: the routes are real."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import; conftest set it
    hub.redirect = True  # LFS files via a "CDN" on another host name, as huggingface.co does
    path = huggingface_hub.hf_hub_download(
        REPO, "model.safetensors", endpoint=hub.url, local_dir=tmp_path / "hf"
    )
    assert Path(path).read_bytes() == hub.repos[REPO].files["model.safetensors"].data
    info = huggingface_hub.HfApi(endpoint=hub.url).model_info(REPO, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes["model.safetensors"] == 3 * MB
    meta = huggingface_hub.get_hf_file_metadata(
        huggingface_hub.hf_hub_url(REPO, "model.safetensors", endpoint=hub.url)
    )
    assert meta.etag == hub.repos[REPO].files["model.safetensors"].sha256
    assert meta.size == 3 * MB and meta.commit_hash == hub.repos[REPO].revision_sha


def test_full_download_through_an_hf_endpoint(hub: FakeHub, paths: Paths) -> None:
    hub.redirect = True
    events: list[Progress] = []
    result = _manager(paths).download(
        DownloadRequest(REPO, source=hub.url), CallbackListener(on_progress=events.append)
    )
    folder = result.path
    assert sorted(p.name for p in folder.iterdir()) == [
        ".bubble-download.json",
        ".download.lock",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert (folder / "model.safetensors").read_bytes() == hub.repos[REPO].files["model.safetensors"].data
    assert "README.md" not in hub.bytes_by_file and not list(folder.glob("*.part*"))
    done = [e.done_bytes for e in events]
    assert done == sorted(done) and events[-1].state == "done"
    expected = sum(f.size for p, f in hub.repos[REPO].files.items() if p.endswith(".json")) + 3 * MB
    assert events[-1].done_bytes == events[-1].total_bytes == expected
    manifest = json.loads((folder / ".bubble-download.json").read_text())
    assert manifest["revision"] == hub.repos[REPO].revision_sha and manifest["source"] == hub.url


def test_modelscope_file_api_with_its_own_repo_id(hub: FakeHub, paths: Paths) -> None:
    """A catalog entry whose ModelScope id differs from its HF id is fetched through ModelScope's file API."""
    data = hub.repos[REPO].files["model.safetensors"].data
    assert data is not None
    hub.add_repo(
        "ZhipuAI/tiny-chat", {"config.json": b"{}", "model.safetensors": data, "modeling_x.py": b"# code"}
    )
    catalog = parse_catalog(
        {
            "entries": [
                {
                    "id": "tiny-chat",
                    "name": "Tiny chat",
                    "family": "tiny",
                    "kind": "chat",
                    "format": "transformers",
                    "params_b": 0.001,
                    "quant": "fp32",
                    "context": 512,
                    "ram_gb": 0.1,
                    "vram_gb": 0,
                    "languages": ["zh"],
                    "licence": "MIT",
                    "remote_code": True,
                    "files": [
                        {"path": "*.json"},
                        {"path": "*.py"},
                        {"path": "model.safetensors", "size": 3 * MB},
                    ],
                    "sources": {
                        "hf": {"repo": "THUDM/tiny-chat"},
                        "modelscope": {"repo": "ZhipuAI/tiny-chat"},
                    },
                    "source_note": "made up for the test",
                }
            ]
        }
    )
    _sources(paths, ["modelscope"], modelscope=hub.url)
    result = _manager(paths, catalog=catalog).download(DownloadRequest("tiny-chat", source="modelscope"))
    assert result.plan.repo == "ZhipuAI/tiny-chat" and result.plan.remote_code
    assert sorted(f.path for f in result.plan.files) == ["config.json", "model.safetensors", "modeling_x.py"]
    assert (result.path / "model.safetensors").read_bytes() == data
    assert any("/api/v1/models/ZhipuAI/tiny-chat/repo?" in r[1] for r in hub.requests)


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bubble_desktop.cli", "--home", str(home), "models", "download", *args]


def test_sigkill_half_way_then_rerun_fetches_only_the_missing_bytes(paths: Paths, bubble_home: Path) -> None:
    size = 8 * MB
    with FakeHub() as hub:
        hub.add_file("big/model", "weights.bin", os.urandom(size))
        hub.rate_bps = 4 * MB  # ~2 s for the whole file: time to kill it half-way
        proc = subprocess.Popen(
            _cli(bubble_home, "big/model", "--file", "weights.bin", "--source", hub.url, "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            event = json.loads(line)
            seen = max(seen, int(event.get("done_bytes", 0)))
            if seen >= size // 2:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert hub.wait_idle(), "the hub noticed the dead client"
        part = paths.models_dir / "downloads" / "big--model" / "weights.bin.part"
        assert part.is_file(), "the partial file survives the kill"
        kept = part.stat().st_size
        served_first = hub.bytes_by_file["big/model/weights.bin"]
        assert size // 2 <= kept < size
        assert served_first - kept <= 1 << 20, "a kill loses at most one chunk"

        hub.reset_counters()
        hub.rate_bps = 0
        done = subprocess.run(
            _cli(bubble_home, "big/model", "--file", "weights.bin", "--source", hub.url, "--json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout.strip().splitlines()[-1])
        assert final["event"] == "done"
        assert hub.bytes_by_file["big/model/weights.bin"] == size - kept, "only the missing bytes"
        ranges = [r[2] for r in hub.requests if r[1].endswith("weights.bin")]
        assert ranges == [f"bytes={kept}-"]
        assert _sha(Path(final["path"]) / "weights.bin") == hub.repos["big/model"].files["weights.bin"].sha256


@pytest.mark.parametrize("transport", ["stdlib", "httpx"])
def test_dropped_connection_is_retried_from_where_it_stopped(
    hub: FakeHub, paths: Paths, transport: str
) -> None:
    """Both body transports: http.client (the default) and httpx (used behind a SOCKS proxy)."""
    hub.drop_after = 1 * MB + 12345
    hub.redirect = True
    result = _manager(paths, transport=transport).download(DownloadRequest(REPO, source=hub.url))
    f = hub.repos[REPO].files["model.safetensors"]
    assert _sha(result.path / "model.safetensors") == f.sha256
    assert hub.bytes_by_file[f"{REPO}/model.safetensors"] == f.size, "nothing fetched twice"
    ranges = [r[2] for r in hub.requests if r[1].startswith("/cdn/") and r[1].endswith("model.safetensors")]
    assert ranges == ["", f"bytes={MB + 12345}-"]


def test_a_stalled_transfer_times_out_and_resumes(hub: FakeHub, paths: Paths) -> None:
    hub.stall_after = 1 * MB
    t0 = time.monotonic()
    result = _manager(paths, stall_timeout_s=0.5).download(DownloadRequest(REPO, source=hub.url))
    assert time.monotonic() - t0 < 10
    f = hub.repos[REPO].files["model.safetensors"]
    assert _sha(result.path / "model.safetensors") == f.sha256


def test_checksum_mismatch_is_a_clear_error_and_the_file_is_removed(hub: FakeHub, paths: Paths) -> None:
    hub.corrupt = True  # right sha256 advertised, wrong bytes served
    with pytest.raises(IntegrityError) as info:
        _manager(paths).download(DownloadRequest(REPO, files=("model.safetensors",), source=hub.url))
    assert "model.safetensors" in info.value.message and "sha256" in info.value.message
    assert "removed" in info.value.hint
    folder = paths.models_dir / "downloads" / REPO.replace("/", "--")
    assert not list(folder.glob("model.safetensors*")), "neither the file nor its partial is left"


def test_a_part_started_on_one_source_continues_on_another(paths: Paths) -> None:
    """Parts are stamped by sha256: one begun on hf continues from hf-mirror (same file, other host)."""
    data = os.urandom(4 * MB)
    with FakeHub() as first, FakeHub() as second:
        for h in (first, second):
            h.add_file("org/m", "w.bin", data)
        first.rate_bps = 4 * MB
        got = threading.Event()
        job = _manager(paths).start(
            DownloadRequest("org/m", files=("w.bin",), source=first.url),
            CallbackListener(on_progress=lambda p: p.done_bytes >= MB and got.set()),
        )
        assert got.wait(10)
        job.cancel()
        assert job.wait(5) and job.state == "cancelled"
        kept = (paths.models_dir / "downloads" / "org--m" / "w.bin.part").stat().st_size
        assert kept >= MB
        result = _manager(paths).download(DownloadRequest("org/m", files=("w.bin",), source=second.url))
        assert second.bytes_by_file["org/m/w.bin"] == len(data) - kept
        assert (result.path / "w.bin").read_bytes() == data


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_disk_filling_up_mid_download_is_a_clear_error(hub: FakeHub, paths: Paths) -> None:
    folder = paths.models_dir / "downloads" / "full"
    folder.mkdir(parents=True)
    (folder / "model.safetensors.part").symlink_to("/dev/full")  # every write: ENOSPC, a real full disk
    with pytest.raises(NotEnoughSpaceError, match="disk filled up while downloading model.safetensors"):
        _manager(paths).download(
            DownloadRequest(REPO, files=("model.safetensors",), source=hub.url, name="full")
        )


def test_not_enough_disk_fails_before_any_byte(hub: FakeHub, paths: Paths) -> None:
    with pytest.raises(NotEnoughSpaceError) as info:
        _manager(paths, free_space=lambda p: 2 * MB).download(DownloadRequest(REPO, source=hub.url))
    assert "disk space" in info.value.message and "Free some disk space" in info.value.hint
    assert hub.body_bytes == 0, "not one byte of a file was fetched"
    assert not list((paths.models_dir / "downloads").rglob("*.part"))


def test_no_network_is_a_clear_error_within_two_seconds(paths: Paths) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    _sources(paths, ["hf", "hf-mirror", "modelscope"], hf=dead, hf_mirror=dead, modelscope=dead)
    t0 = time.monotonic()
    with pytest.raises(SourceUnreachableError) as info:
        _manager(paths).download(DownloadRequest("qwen2.5-0.5b-instruct-q4km"))
    assert time.monotonic() - t0 < 2.0
    assert "cannot be reached" in info.value.message and "hf-mirror" in info.value.hint


def test_cli_no_network_exit_code_and_json_error(bubble_home: Path, paths: Paths) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        _cli(bubble_home, REPO, "--source", dead, "--json"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    error = json.loads(done.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and "cannot be reached" in error["message"]
    assert "error: " in done.stderr and "hint: " in done.stderr


def test_auto_falls_through_an_unreachable_source_and_remembers_the_one_that_worked(
    hub: FakeHub, paths: Paths
) -> None:
    _sources(
        paths,
        ["hf", "hf-mirror", "modelscope"],
        hf=f"http://127.0.0.1:{_closed_port()}",
        hf_mirror=hub.url,
        modelscope=hub.url,
    )
    notes: list[str] = []
    result = _manager(paths).download(
        DownloadRequest(REPO), CallbackListener(on_progress=lambda p: notes.append(p.message))
    )
    assert result.plan.source == "hf-mirror"
    assert any("Hugging Face" in n and "cannot be reached" in n for n in notes)
    saved = json.loads((paths.config_dir / "model_sources.json").read_text())
    assert saved["last_good"] == "hf-mirror"
    from bubble_desktop.core.models.sources import SourceConfig

    assert [s.name for s in SourceConfig.load(paths).candidates("auto")][:2] == ["hf-mirror", "hf"]


def test_auto_falls_through_a_source_without_the_repo(hub: FakeHub, paths: Paths) -> None:
    with FakeHub() as empty:
        _sources(paths, ["hf", "modelscope"], hf=empty.url, modelscope=hub.url)
        result = _manager(paths).download(DownloadRequest(REPO))
    assert result.plan.source == "modelscope"


def test_the_web_proxy_setting_is_used_for_listing_and_bytes(
    hub: FakeHub, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bubble_desktop.core.settings import Settings, save_settings

    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with ForwardProxy() as proxy:
        settings = Settings()
        settings.web.proxy = proxy.url
        save_settings(settings, paths.settings_file)
        result = DownloadManager(paths).download(DownloadRequest(REPO, source=hub.url))  # proxy from settings
    assert _sha(result.path / "model.safetensors") == hub.repos[REPO].files["model.safetensors"].sha256
    assert any("/api/models/" in u for u in proxy.seen), proxy.seen
    assert any(u.endswith("/model.safetensors") for u in proxy.seen), proxy.seen


def test_a_bad_proxy_is_a_clear_error(hub: FakeHub, paths: Paths) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SourceUnreachableError, match="cannot be reached"):
        DownloadManager(paths, proxy=dead).download(DownloadRequest(REPO, source=hub.url))


def test_hf_endpoint_environment_variable_is_honoured(monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    from bubble_desktop.core.models.sources import SourceConfig

    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org/")
    assert SourceConfig.load(paths).source("hf").endpoint == "https://hub.example.org"
    assert SourceConfig.load(paths).source("hf-mirror").endpoint == "https://hf-mirror.com"


def test_pause_stops_the_bytes_and_resume_finishes(paths: Paths) -> None:
    with FakeHub() as hub:
        hub.add_file("slow/model", "w.bin", os.urandom(4 * MB))
        hub.rate_bps = 8 * MB
        progressed = threading.Event()
        finished = threading.Event()
        listener = CallbackListener(
            on_progress=lambda p: p.done_bytes > 0 and progressed.set(), on_finished=lambda r: finished.set()
        )
        job = _manager(paths).start(DownloadRequest("slow/model", files=("w.bin",), source=hub.url), listener)
        assert progressed.wait(10)
        job.pause()
        deadline = time.monotonic() + 5
        while job.state != "paused" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.state == "paused"
        served = hub.body_bytes
        time.sleep(0.5)  # deliberately idle: nothing may arrive while paused
        assert hub.body_bytes - served <= 1 << 20
        job.resume()
        assert finished.wait(20) and job.wait(5)
        assert job.state == "done" and job.result is not None
        assert _sha(job.result.path / "w.bin") == hub.repos["slow/model"].files["w.bin"].sha256


def test_cancel_keeps_or_removes_the_partial(paths: Paths) -> None:
    with FakeHub() as hub:
        hub.add_file("slow/model", "w.bin", os.urandom(4 * MB))
        hub.rate_bps = 2 * MB
        for remove in (False, True):
            got = threading.Event()
            job = _manager(paths).start(
                DownloadRequest("slow/model", files=("w.bin",), source=hub.url, name=f"c{remove}"),
                CallbackListener(on_progress=lambda p, got=got: p.done_bytes > 0 and got.set()),
            )
            assert got.wait(10)
            t0 = time.monotonic()
            job.cancel(remove_partial=remove)
            assert job.wait(5) and time.monotonic() - t0 < 3
            assert isinstance(job.error, DownloadCancelled) and job.state == "cancelled"
            parts = list((paths.models_dir / "downloads" / f"c{remove}").glob("*.part"))
            assert bool(parts) is (not remove)


def test_unknown_file_and_unknown_repo_are_clear_errors(hub: FakeHub, paths: Paths) -> None:
    hub.add_repo("odd/layout", {"weights.pkl": b"x", "notes.md": b"y"})
    with pytest.raises(DownloadError, match="which files of odd/layout") as info:
        _manager(paths).download(DownloadRequest("odd/layout", source=hub.url))
    assert "--file" in info.value.hint and "weights.pkl" in info.value.hint
    with pytest.raises(DownloadError, match="has no file 'nope.gguf'"):
        _manager(paths).download(DownloadRequest(REPO, files=("nope.gguf",), source=hub.url))
    with pytest.raises(DownloadError, match="is not on"):
        _manager(paths).download(DownloadRequest("nobody/nothing", source=hub.url))


def test_one_download_per_folder_and_no_removal_while_it_runs(paths: Paths) -> None:
    with FakeHub() as hub:
        hub.add_file("slow/model", "w.bin", os.urandom(2 * MB))
        hub.rate_bps = 2 * MB
        got = threading.Event()
        m = _manager(paths)
        job = m.start(
            DownloadRequest("slow/model", files=("w.bin",), source=hub.url),
            CallbackListener(on_progress=lambda p: p.done_bytes > 0 and got.set()),
        )
        assert got.wait(10)
        with pytest.raises(DownloadError, match="already being downloaded"):
            m.download(DownloadRequest("slow/model", files=("w.bin",), source=hub.url))
        with pytest.raises(DownloadError, match="already being downloaded"):
            m.remove("slow--model")
        assert job.wait(20) and job.state == "done"
        m.remove("slow--model")


def test_hub_search_by_name(hub: FakeHub) -> None:
    from bubble_desktop.core.models.sources import SourceConfig, make_client

    hub.add_file("someone/Tiny-GGUF", "tiny-q4_k_m.gguf", b"GGUF")
    with make_client() as client:
        hits = SourceConfig().source(hub.url).search(client, "tiny")
        assert {h.repo for h in hits} == {REPO, "someone/Tiny-GGUF"}
        assert [h.gguf for h in hits if h.repo == "someone/Tiny-GGUF"] == [True]
        with pytest.raises(DownloadError, match="not supported"):
            SourceConfig().source("modelscope").search(client, "tiny")


def test_remove_deletes_the_folder_and_the_registration(hub: FakeHub, paths: Paths) -> None:
    m = _manager(paths)
    result = m.download(DownloadRequest(REPO, source=hub.url, name="tmp-model"))
    assert [d["name"] for d in m.downloaded()] == ["tmp-model"]
    assert m.verify("tmp-model") == []
    with open(result.path / "model.safetensors", "r+b") as f:
        f.write(b"\0" * 16)  # damaged after the download (a power cut before the disk wrote it)
    assert m.verify("tmp-model") == ["model.safetensors"]
    m.remove("tmp-model")
    assert not result.path.exists() and m.downloaded() == []
    with pytest.raises(DownloadError, match="No downloaded model"):
        m.remove("tmp-model")


def test_downloaded_tiny_gguf_is_registered_and_runs_through_llamacpp(
    tiny_gguf: Path, bubble_home: Path
) -> None:
    """Fast suite: a catalog-style GGUF download, registered by name, then bubble-cli ask --model NAME."""
    with FakeHub() as hub:
        hub.add_file("tiny-org/Tiny-GGUF", "tiny-llama-q4_k_m.gguf", source=tiny_gguf)
        hub.add_file("tiny-org/Tiny-GGUF", "tiny-llama-f16.gguf", b"GGUF-other")  # not chosen: Q4_K_M is
        hub.redirect = True
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            _cli(bubble_home, "tiny-org/Tiny-GGUF", "--source", hub.url, "--name", "tiny", "--json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout.strip().splitlines()[-1])
        assert final["registered"] and final["files"] == ["tiny-llama-q4_k_m.gguf"]
    ask = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(bubble_home),
            "ask",
            "--model",
            "tiny",
            "--temperature",
            "0",
            "--json",
            "Hello",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
    )
    assert ask.returncode == 0, ask.stderr[-2000:]
    reply = json.loads(ask.stdout.strip().splitlines()[-1])
    assert "error" not in reply and reply["completion_tokens"] > 0  # gibberish, but generated by llama.cpp


@pytest.mark.slow
def test_downloaded_gguf_answers_through_llamacpp(smollm2_gguf: Path, bubble_home: Path) -> None:
    """bubble-cli models download → registered by name → bubble-cli ask --model NAME answers."""
    with FakeHub() as hub:
        hub.add_file(
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", smollm2_gguf.name.lower(), source=smollm2_gguf
        )
        hub.add_file("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "README.md", b"readme")
        hub.redirect = True
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            _cli(
                bubble_home,
                "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                "--source",
                hub.url,
                "--name",
                "smol",
                "--json",
            ),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout.strip().splitlines()[-1])
        assert final["registered"] and final["name"] == "smol"
        assert hub.body_bytes == smollm2_gguf.stat().st_size
    ask = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(bubble_home),
            "ask",
            "--model",
            "smol",
            "--temperature",
            "0",
            "What is the capital of France?",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env,
    )
    assert ask.returncode == 0, ask.stderr[-2000:]
    assert "Paris" in ask.stdout


def test_cli_catalog_and_sources(bubble_home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "bubble_desktop.cli", "--home", str(bubble_home), "models"]
    cat = subprocess.run(
        [*base, "catalog", "--json", "--language", "zh"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )
    assert cat.returncode == 0, cat.stderr
    data = json.loads(cat.stdout)
    ids = {e["id"] for e in data["entries"]}
    assert data["recommended"]["chat"] in ids and data["recommended"]["embedding"] in ids
    assert {e["fit"] for e in data["entries"]} <= {"runs well", "tight", "too big"}
    assert data["machine"]["ram_total_gb"] > 0
    src = subprocess.run(
        [
            *base,
            "sources",
            "--order",
            "modelscope,hf-mirror",
            "--endpoint",
            "hf-mirror=http://127.0.0.1:9/",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )
    assert src.returncode == 0, src.stderr
    out = json.loads(src.stdout)
    assert out["order"] == ["modelscope", "hf-mirror"]
    assert {r["name"]: r["endpoint"] for r in out["sources"]}["hf-mirror"] == "http://127.0.0.1:9"
    bad = subprocess.run(
        [*base, "sources", "--order", "nowhere"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )
    assert bad.returncode == 2 and "Unknown model source" in bad.stderr


@pytest.mark.slow
def test_downloaded_transformers_model_answers_by_name(tiny_model_dir: Path, bubble_home: Path) -> None:
    """A transformers model folder downloaded by repo id is found by its name: ask --model NAME."""
    with FakeHub() as hub:
        for p in sorted(tiny_model_dir.iterdir()):
            if p.is_file():
                hub.add_file("tiny-org/tiny-llama", p.name, source=p)
        hub.add_file("tiny-org/tiny-llama", "README.md", b"readme")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            _cli(bubble_home, "tiny-org/tiny-llama", "--source", hub.url, "--name", "tl", "--json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout.strip().splitlines()[-1])
        assert "README.md" not in final["files"] and "model.safetensors" in final["files"]
    ask = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubble_desktop.cli",
            "--home",
            str(bubble_home),
            "ask",
            "--model",
            "tl",
            "--temperature",
            "0",
            "--json",
            "Hello",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env,
    )
    assert ask.returncode == 0, ask.stderr[-2000:]
    assert json.loads(ask.stdout.strip().splitlines()[-1])


def test_cli_search_finds_repos_by_name_skipping_modelscope_and_lists_files(
    hub: FakeHub, paths: Paths, bubble_home: Path
) -> None:
    # ModelScope first in the order: a name search goes to the first Hugging Face-compatible source
    _sources(paths, ["modelscope", "hf"], hf=hub.url, modelscope=f"http://127.0.0.1:{_closed_port()}")
    out = subprocess.run(
        [sys.executable, "-m", "bubble_desktop.cli", "--home", str(bubble_home), "models", "search"]
        + [REPO.split("/")[1][:6], "--files", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["source"] == "Hugging Face" and [h["repo"] for h in result["hits"]] == [REPO]
    assert {"config.json", "model.safetensors"} <= {f["path"] for f in result["files"]}
    assert not any(path.startswith("/api/v1") for _, path, _ in hub.requests)  # nothing asked of ModelScope


def test_search_on_modelscope_only_is_refused_with_what_to_do(paths: Paths) -> None:
    _sources(paths, ["modelscope"])
    with pytest.raises(DownloadError, match="not on ModelScope"):
        _manager(paths).search("qwen")


@pytest.mark.parametrize("transport", ["httpx", "stdlib"])
def test_a_gated_repo_needs_the_hf_token_which_never_follows_a_redirect_to_the_cdn(
    hub: FakeHub, paths: Paths, transport: str
) -> None:
    hub.gated[REPO] = "hf_secret"
    hub.redirect = True  # LFS files redirect to http://localhost:PORT/cdn/…: another origin
    _sources(paths, ["hf"], hf=hub.url)
    with pytest.raises(DownloadError, match="gated or private") as info:
        _manager(paths, transport=transport).download(DownloadRequest(REPO))
    assert "Sources" in info.value.hint and "token" in info.value.hint
    cfg = SourceConfig.load(paths)
    cfg.hf_token = "hf_secret"
    cfg.save(paths)
    hub.auth_seen.clear()
    result = _manager(paths, transport=transport).download(DownloadRequest(REPO))
    assert (result.path / "model.safetensors").read_bytes() == hub.repos[REPO].files["model.safetensors"].data
    sent = [(host, path) for host, path, auth in hub.auth_seen if auth]
    assert sent and all(host.startswith("127.0.0.1") for host, _ in sent)
    cdn = [auth for host, path, auth in hub.auth_seen if path.startswith("/cdn/")]
    assert cdn and not any(cdn)  # the CDN got the file requests, never the token
    assert "hf_secret" not in (result.path / ".bubble-download.json").read_text()


def test_the_hf_token_goes_to_hugging_face_only(hub: FakeHub, paths: Paths) -> None:
    hub.gated[REPO] = "hf_secret"
    _sources(paths, ["hf-mirror"], hf_mirror=hub.url)
    cfg = SourceConfig.load(paths)
    cfg.hf_token = "hf_secret"
    cfg.save(paths)
    with pytest.raises(DownloadError, match="gated or private"):
        _manager(paths).download(DownloadRequest(REPO))
    assert hub.auth_seen and not any(auth for _, _, auth in hub.auth_seen)


def test_the_live_catalog_check_reports_a_changed_size_and_a_missing_file(hub: FakeHub, paths: Paths) -> None:
    """tests/bench/catalog_live.py (run where the hubs are reachable) against our own hub."""
    from bubble_desktop.core.models.catalog import parse_catalog
    from tests.bench.catalog_live import check

    size = hub.repos[REPO].files["model.safetensors"].size
    base = {
        "family": "tiny",
        "kind": "chat",
        "format": "transformers",
        "params_b": 0.001,
        "quant": "F32",
        "vram_gb": 0.0,
        "context": 2048,
        "ram_gb": 0.1,
        "languages": ["en"],
        "licence": "MIT",
        "sources": {"hf": {"repo": REPO}},
        "source_note": "the test's own hub",
    }
    catalog = parse_catalog(
        {
            "entries": [
                {
                    **base,
                    "id": "good",
                    "name": "Good",
                    "files": [{"path": "model.safetensors", "size": size}],
                },
                {
                    **base,
                    "id": "resized",
                    "name": "R",
                    "files": [{"path": "model.safetensors", "size": size + 1}],
                },
                {**base, "id": "gone", "name": "G", "files": [{"path": "gone.safetensors", "size": 5}]},
            ]
        }
    )
    _sources(paths, ["hf"], hf=hub.url)
    result = check(["hf"], catalog=catalog, paths=paths)
    by_id = {r["id"]: r for r in result["rows"]}
    assert by_id["good"]["ok"] and result["failed"] == 2
    assert "size" in by_id["resized"]["problems"][0]
    assert "gone.safetensors" in str(by_id["gone"].get("error", "")) + str(by_id["gone"].get("problems", ""))
