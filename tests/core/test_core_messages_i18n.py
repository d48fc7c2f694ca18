"""Core's messages reach the user in their language: templates collected from the source, each with
Chinese, matched back from finished texts; without a translator everything stays English."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bubble_desktop.core.errors import GenerationError, ParseError, WebSearchError
from bubble_desktop.core.i18n import FIELD, Catalog, localize, set_translator

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():  # type: ignore[no-untyped-def]
    return _load("update_translations", ROOT / "resources" / "i18n" / "update_translations.py")


@pytest.fixture(scope="module")
def chinese() -> dict[str, str]:
    return dict(_load("zh_CN", ROOT / "resources" / "i18n" / "zh_CN.py").CORE_TRANSLATIONS)


@pytest.fixture
def translated(chinese: dict[str, str]) -> Iterator[None]:
    """The translator the UI installs, built from our dictionary instead of the .qm."""
    set_translator(Catalog(chinese, lambda template: chinese.get(template, template)))
    yield
    set_translator(None)


def test_every_core_message_template_has_chinese_with_all_its_fields(tool, chinese: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    templates = tool.core_templates()
    assert len(templates) > 250  # errors, hints, notices, failed-file reasons, loading stages
    for must in ("broken {enc} text: {exc.reason}", "Web search timed out; answered without the web."):
        assert must in templates
    missing = [t for t in templates if t not in chinese]
    assert not missing, f"add these to CORE_TRANSLATIONS in resources/i18n/zh_CN.py: {missing}"
    for template in templates:
        zh = chinese[template]
        fields = sorted({int(f) for f in FIELD.findall(zh)})
        assert fields == list(range(len(FIELD.findall(template)))), (template, zh)
        assert re.search(r"[\u4e00-\u9fff]", zh) or template.startswith("pip install"), (template, zh)
    stale = set(chinese) - set(templates)
    assert not stale, f"no longer in core, remove from CORE_TRANSLATIONS: {stale}"


def test_generated_core_strings_are_up_to_date(tool) -> None:  # type: ignore[no-untyped-def]
    """A new core message must reach the .ts: run resources/i18n/update_translations.py."""
    generated = ROOT / "bubble_desktop" / "ui" / "core_strings.py"
    assert generated.read_text(encoding="utf-8") == tool.core_strings_source()


def test_finished_texts_are_matched_back_to_their_template(translated: None) -> None:
    assert (
        ParseError("broken gbk text: illegal multibyte sequence").message
        == "gbk 文本已损坏：illegal multibyte sequence"
    )
    assert ParseError("unsupported file type (.exe)").message == "不支持的文件类型（.exe）"
    error = WebSearchError("Web search failed (ConnectError); answered without the web.")
    assert error.message == "联网搜索失败（ConnectError）；本次回答没有用到网络结果。"
    assert error.hint.startswith("回答会在没有网络结果的情况下继续")
    # the too-long question, fields in another order in Chinese
    long = GenerationError(
        "The question and system prompt take 900 tokens; with 256 reserved for the answer they do not fit "
        "the model's context window of 1024 tokens."
    )
    assert (
        long.message
        == "问题和系统提示占用 900 个词元；再为回答预留 256 个词元后，超出了模型 1024 个词元的上下文窗口。"
    )
    assert localize("Port 80 on 0.0.0.0 is already in use.") == "0.0.0.0 上的端口 80 已被占用。"
    # a field holding another of our texts is translated too
    nested = (
        "Knowledge-base search failed (Web search timed out; answered without the web.); answered without it."
    )
    assert (
        localize(nested)
        == "知识库搜索失败（联网搜索超时；本次回答没有用到网络结果。）；本次回答没有用到知识库。"
    )
    # failed-file reasons and loading stages, stored or passed on as plain strings
    assert localize("could not be read (ValueError: bad)") == "无法读取（ValueError：bad）"
    assert localize("Loading the libraries") == "正在加载运行库"
    # what we do not know stays as it is
    assert localize("Something nobody wrote") == "Something nobody wrote"


def test_programs_keep_english(translated: None) -> None:
    error = ParseError("file not found")
    assert error.message == "找不到文件"
    assert error.to_dict() == {"error": "ParseError", "message": "file not found", "hint": ""}
    assert error.english_message == "file not found"


def test_without_a_translator_everything_is_english() -> None:
    set_translator(None)
    assert ParseError("file not found").message == "file not found"
    assert localize("Loading the libraries") == "Loading the libraries"


def test_default_system_prompt_follows_the_language_until_changed(translated: None) -> None:
    from bubble_desktop.core.chat.prompt import system_text
    from bubble_desktop.core.settings import DEFAULT_SYSTEM_PROMPT, Settings, effective_system_prompt

    assert Settings().sampling.system_prompt == DEFAULT_SYSTEM_PROMPT  # the file keeps English
    assert system_text(DEFAULT_SYSTEM_PROMPT, False).startswith("你是 O.Bubble")
    assert effective_system_prompt("Answer like a pirate.") == "Answer like a pirate."
    set_translator(None)
    assert system_text(DEFAULT_SYSTEM_PROMPT, False) == DEFAULT_SYSTEM_PROMPT
