"""The shipped catalog validates; bad ones are refused clearly; fit and recommend on made-up machines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bubble_desktop.core.models.catalog import CatalogError, default_catalog_path, load_catalog, parse_catalog
from bubble_desktop.core.models.machine import Machine, detect, fit, fit_reason, recommend

GOOD: dict[str, Any] = {
    "entries": [
        {
            "id": "tiny-gguf",
            "name": "Tiny",
            "family": "tiny",
            "kind": "chat",
            "format": "gguf",
            "params_b": 1.5,
            "quant": "Q4_K_M",
            "context": 4096,
            "ram_gb": 2.5,
            "vram_gb": 2.0,
            "languages": ["zh", "en"],
            "licence": "MIT",
            "files": [{"path": "tiny.gguf", "size": 1_000_000_000, "sha256": "a" * 64}],
            "sources": {"hf": {"repo": "org/Tiny-GGUF"}, "modelscope": {"repo": "other/Tiny-GGUF"}},
            "source_note": "made up for the tests",
        }
    ]
}


def _bad(mutate: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    mutate(data["entries"][0])
    return data


def test_the_shipped_catalog_is_valid_and_complete() -> None:
    catalog = load_catalog()
    assert default_catalog_path().is_file()
    ids = [e.id for e in catalog.entries]
    assert len(ids) == len(set(ids)) >= 10
    assert catalog.of_kind("chat") and catalog.of_kind("embedding")
    for e in catalog.entries:
        assert e.source_note and e.licence and e.sources and e.size_bytes > 0, e.id
    # the hub ids that differ between Hugging Face and ModelScope
    glm = catalog.get("chatglm3-6b")
    assert glm is not None and glm.sources["hf"].repo == "THUDM/chatglm3-6b"
    assert glm.sources["modelscope"].repo == "ZhipuAI/chatglm3-6b" and glm.remote_code
    bge = catalog.get("bge-small-zh-v1.5")
    assert bge is not None and bge.sources["modelscope"].repo == "AI-ModelScope/bge-small-zh-v1.5"
    q = catalog.get("qwen2.5-1.5b-instruct-q4km")
    assert q is not None and q.files[0].path == "qwen2.5-1.5b-instruct-q4_k_m.gguf"
    assert catalog.find("qwen/qwen2.5-1.5b-instruct-gguf") is q  # by repo id, any case


def test_a_good_catalog_parses() -> None:
    c = parse_catalog(GOOD)
    e = c.entries[0]
    assert e.size_bytes == 1_000_000_000 and not e.size_approx
    assert c.find("other/Tiny-GGUF") is e and c.find("nothing") is None


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.update(kind="embedding"), "GGUF entries are chat models"),
        (lambda e: e["files"][0].update(sha256="xyz"), "sha256"),
        (lambda e: e["files"][0].pop("size"), "no file has a size"),
        (lambda e: e["files"][0].update(path="../evil.gguf"), "relative"),
        (lambda e: e["sources"].update(hf={"repo": "not a repo"}), "owner/name"),
        (lambda e: e["sources"].update(civitai={"repo": "a/b"}), "sources"),
        (lambda e: e.update(id="Bad Id"), "id"),
        (lambda e: e.pop("source_note"), "source_note"),
        (lambda e: e.update(ram_gb=-1), "ram_gb"),
        (lambda e: e.update(surprise=1), "surprise"),
    ],
)
def test_a_bad_catalog_is_refused_with_the_place_named(mutate: Any, fragment: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(_bad(mutate))
    assert fragment in info.value.message
    assert "reinstall" in info.value.hint


def test_duplicate_ids_unreadable_and_non_json_files(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["entries"].append(copy.deepcopy(data["entries"][0]))
    with pytest.raises(CatalogError, match="duplicate"):
        parse_catalog(data)
    bad = tmp_path / "c.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="could not be read"):
        load_catalog(tmp_path / "missing.json")
    bad.write_text(json.dumps(GOOD), encoding="utf-8")
    assert load_catalog(bad).entries[0].id == "tiny-gguf"


def test_fit_verdicts() -> None:
    e = parse_catalog(GOOD).entries[0]  # 2.5 GB RAM, 2 GB VRAM, 1 GB download
    assert fit(e, Machine(16, 10)) == "runs well"
    assert fit(e, Machine(3.5, 1.0)) == "tight"
    assert fit(e, Machine(2.0, 1.0)) == "too big"
    assert fit(e, Machine(2.0, 1.0, vram_free_gb=4.0)) == "runs well"  # on the GPU
    assert fit(e, Machine(16, 10, disk_free_gb=0.5)) == "too big"
    assert "disk" in fit_reason(e, Machine(16, 10, disk_free_gb=0.5))
    assert fit(e, Machine(0, 0)) == "tight"  # unknown RAM: never "runs well"


def test_recommend_prefers_the_language_then_the_biggest_that_runs_well() -> None:
    catalog = load_catalog()
    laptop = Machine(8, 5, disk_free_gb=100)
    chat = recommend(catalog, laptop, "chat", "zh")
    assert chat and "zh" in chat[0].languages and fit(chat[0], laptop) == "runs well"
    assert chat[0].format == "gguf"
    assert all(fit(e, laptop) != "too big" for e in chat)
    assert recommend(catalog, laptop, "embedding", "zh")[0].id == "bge-small-zh-v1.5"
    tiny = Machine(1.0, 0.5, disk_free_gb=100)
    assert all(e.ram_gb <= 0.85 for e in recommend(catalog, tiny, "chat", "zh"))
    big_gpu = Machine(64, 60, vram_free_gb=40, disk_free_gb=500)
    assert fit(catalog.get("glm-4-9b-chat"), big_gpu) == "runs well"  # type: ignore[arg-type]


def test_detect_reads_this_machine() -> None:
    m = detect(Path.cwd(), gpu=False)
    assert m.ram_total_gb > 0.1 and 0 < m.ram_available_gb <= m.ram_total_gb
    assert m.disk_free_gb > 0
