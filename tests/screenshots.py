"""Make the README screenshots from the real app, offscreen (a script, not a test).

    .venv/bin/python tests/screenshots.py [--out resources/screenshots]

In a temporary BUBBLE_HOME it builds the tiny test chat model, indexes a few sample documents into
a knowledge base with the real KnowledgeService (MiniLM + Qdrant Edge), seeds one example
conversation per language into the real conversation store, then starts the real main window once
per language (a child process each, as the language is chosen at start-up) and saves:
main_{lang}.png, knowledge_{lang}.png, settings_{lang}.png and main_dark_{lang}.png.
The example conversations are seeded text (the tiny test model only writes gibberish); everything
else on screen is the app as a user sees it. Needs a CJK font (apt-get install fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "zh_CN")
SIZE = (1280, 800)

DOCS = {
    "O.Bubble guide.md": (
        "# O.Bubble guide\n\n## Knowledge bases\n\nDrag files "
        "or folders onto the Knowledge tab. Bubble reads "
        "text, Markdown, PDF, Word, HTML, CSV and JSONL, splits them into chunks and indexes them on your "
        "disk. Nothing leaves your computer.\n\n## Sampling\n\nTemperature controls how adventurous the "
        "wording is. Use the Precise preset for repeatable answers.\n"
    ),
    "release-notes-2025.txt": (
        "Release notes 2025\n\nVersion 1.4 adds hybrid search: "
        "meaning-based and keyword search are combined, "
        "so Chinese documents are found even with an English embedding model.\nVersion 1.3 made indexing "
        "twice as fast and added cancel.\n"
    ),
    "产品说明.txt": (
        "产品说明\n\nO.Bubble 是一个完全在本机运行的私人聊天助手。它可以根据你自己的文档回答问题，"
        "所有数据都保存在你的电脑上。\n\n知识库支持拖放文件和文件夹，并显示索引进度。\n"
    ),
    "差旅报销制度.md": (
        "# 差旅报销制度\n\n## 住宿标准\n\n一线城市每晚不超过 600 元，其他城市每晚不超过 400 元。\n\n"
        "## 报销流程\n\n出差结束后 10 个工作日内提交发票和行程单，由部门负责人审批。\n"
    ),
    "faq.csv": (
        "question,answer\nWhere are my files stored?,In the data folder shown in Settings → Data.\n"
        "Can I use a GPU?,Yes: Settings → Model → Device = Auto uses CUDA when present.\n"
        "Does web search send my documents?,No. Only your question is sent and only when you turn it on.\n"
    ),
}

CONVERSATIONS = {
    "en": [
        ("Draft a thank-you note to the team", None),
        ("Summarise the release notes", None),
        ("Where are my files stored?", None),
        (
            "How do I keep answers repeatable?",
            [
                ("user", "How do I make Bubble give the same answer every time?"),
                (
                    "assistant",
                    "Use the **Precise** preset in *Settings → Sampling* [1]. It sets:\n\n"
                    "| Setting | Value | Why |\n|---|---|---|\n"
                    "| Temperature | 0 | always the most likely next word |\n"
                    "| Top-p | 1.0 | no extra filtering |\n"
                    "| Seed | any fixed number | same random choices |\n\n"
                    "From the command line it is one flag:\n\n"
                    '```bash\nbubble-cli ask "Summarise the release notes" --temperature 0\n```\n\n'
                    "Hybrid search (added in version 1.4 [2]) keeps "
                    "retrieval working for Chinese documents too.",
                ),
            ],
        ),
    ],
    "zh_CN": [
        ("帮我写一封会议纪要邮件", None),
        ("总结一下产品说明", None),
        ("这个应用会上传我的文档吗？", None),
        (
            "差旅住宿标准",
            [
                ("user", "出差去上海，住宿每晚最多能报销多少？"),
                (
                    "assistant",
                    "根据《差旅报销制度》[1]：\n\n"
                    "- **一线城市**（如上海）：每晚不超过 **600 元**；\n"
                    "- 其他城市：每晚不超过 400 元。\n\n"
                    "出差结束后 **10 个工作日内**提交发票和行程单，由部门负责人审批 [1]。\n\n"
                    "| 城市类型 | 住宿上限（元/晚） |\n|---|---|\n| 一线城市 | 600 |\n| 其他城市 | 400 |",
                ),
            ],
        ),
    ],
}
KB_NAME = {"en": "Handbook", "zh_CN": "员工手册"}


def prepare(home: Path, lang: str) -> None:
    """Tiny model, settings, sample documents in a knowledge base, example conversations in ``lang``."""
    sys.path.insert(0, str(ROOT))
    from bubble_desktop.core.chat.sources import Source
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings, save_settings
    from tests.fixtures.tiny_models import build_tiny_model

    paths = Paths.under(home).ensure()
    model_dir = build_tiny_model(paths.models_dir / "tiny-chat", "llama")
    settings = Settings()
    settings.model.path = str(model_dir)
    save_settings(settings, paths.settings_file)

    docs = home / "Documents"
    docs.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    try:
        import docx

        document = docx.Document()
        document.add_heading("Team meeting notes", 1)
        document.add_paragraph(
            "Decided: ship the Chinese translation with version 1.4; screenshots in the README."
        )
        document.save(str(docs / "meeting-notes.docx"))
    except ImportError:
        pass
    service = KnowledgeService(paths, settings.knowledge)
    try:
        service.create_base(KB_NAME[lang])
        report = service.add_paths(KB_NAME[lang], [docs])
        print(f"indexed {len(report.indexed)} files, {report.chunks_added} chunks", file=sys.stderr)
    finally:
        service.close()

    store = ConversationStore(paths.chats_db)
    try:
        for title, messages in CONVERSATIONS[lang]:
            cid = store.create_conversation(title, kb_names=[KB_NAME[lang]])
            for role, text in messages or [("user", title)]:
                sources = ()
                if role == "assistant":
                    doc = "差旅报销制度.md" if lang == "zh_CN" else "O.Bubble guide.md"
                    sources = (
                        Source(
                            1,
                            "kb",
                            doc,
                            DOCS[doc][:200],
                            path=str(docs / doc),
                            position="line 5",
                            score=0.82,
                            kb=KB_NAME[lang],
                        ),
                    )
                    if lang == "en":
                        sources += (
                            Source(
                                2,
                                "kb",
                                "release-notes-2025.txt",
                                DOCS["release-notes-2025.txt"][:200],
                                path=str(docs / "release-notes-2025.txt"),
                                position="line 3",
                                score=0.64,
                                kb=KB_NAME[lang],
                            ),
                        )
                stats = {"completion_tokens": 142, "tokens_per_s": 23.4} if role == "assistant" else None
                store.add_message(cid, role, text, sources=sources, stats=stats)
    finally:
        store.close()


def child(lang: str, out: Path) -> int:
    """Run the real window in this process, in ``lang``, and save the screenshots."""
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QDeadlineTimer, QEventLoop
    from PySide6.QtWidgets import QApplication

    from bubble_desktop.bootstrap import build_context
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import load_settings
    from bubble_desktop.ui.i18n import install_translator
    from bubble_desktop.ui.main_window import MainWindow
    from bubble_desktop.ui.settings_dialog import SettingsDialog
    from bubble_desktop.ui.theme import apply_theme

    app = QApplication(sys.argv[:1])
    app.setApplicationName("O.Bubble")
    paths = Paths.default()
    settings, notices = load_settings(paths.settings_file)
    settings.appearance.language = lang  # type: ignore[assignment]
    apply_theme(app, "light", settings.appearance.font_size)
    install_translator(app, lang)

    def wait(condition, seconds: float = 60.0) -> bool:
        deadline = QDeadlineTimer(int(seconds * 1000))
        while not condition():
            if deadline.hasExpired():
                return False
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        return True

    def settle(ms: int = 400) -> None:
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    ctx = build_context(paths, settings, notices)
    window = MainWindow(ctx)
    window.resize(*SIZE)
    window.show()
    ready: list[object] = []
    window.model_ready.connect(ready.append)
    window.load_configured_model()
    if not wait(lambda: bool(ready), 120):
        print("model did not load in time; screenshot shows the loading state", file=sys.stderr)
    # open the conversation with an answer in this language
    conversations = ctx.store.list_conversations()
    wanted = CONVERSATIONS[lang][-1][0]
    target = next((c for c in conversations if c.title == wanted), conversations[0])
    window.sidebar.set_current(target.id) if hasattr(window.sidebar, "set_current") else None
    window.open_conversation(target.id)
    settle(800)
    suffix = "zh" if lang == "zh_CN" else "en"
    window.grab().save(str(out / f"main_{suffix}.png"))

    # knowledge tab with its documents and a test search
    tab = window.knowledge_tab
    window.tabs.setCurrentWidget(tab)
    wait(lambda: tab.model.rowCount() >= len(DOCS), 60)
    tab.search_edit.setText("住宿标准" if lang == "zh_CN" else "how is Chinese found with an English model?")
    tab.search_button.click()
    wait(lambda: len(tab.hits) > 0, 60)
    settle(400)
    window.grab().save(str(out / f"knowledge_{suffix}.png"))

    # settings dialog on the sampling page
    dialog = SettingsDialog(window.settings, paths, window)
    dialog.pages.setCurrentRow(1)
    dialog.show()
    from PySide6.QtCore import QEvent

    QApplication.sendEvent(dialog.editor("sampling", "temperature").spin, QEvent(QEvent.Type.Enter))
    settle(400)
    dialog.grab().save(str(out / f"settings_{suffix}.png"))
    dialog.close()

    # dark theme
    window.tabs.setCurrentIndex(0)
    apply_theme(app, "dark", settings.appearance.font_size)
    window.open_conversation(target.id)  # messages render with the palette they are built in
    settle(800)
    window.grab().save(str(out / f"main_dark_{suffix}.png"))
    apply_theme(app, "light", settings.appearance.font_size)

    window.close()
    window.shutdown()
    ctx.knowledge.close()
    ctx.store.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / "screenshots")
    parser.add_argument("--child", choices=LANGUAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args.child, out)
    with tempfile.TemporaryDirectory(prefix="bubble-shots-") as tmp:
        for lang in LANGUAGES:
            home = Path(tmp) / f"home-{lang}"
            env = {
                **os.environ,
                "BUBBLE_HOME": str(home),
                "QT_QPA_PLATFORM": "offscreen",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
            os.environ.update(env)
            prepare(home, lang)
            result = subprocess.run([sys.executable, __file__, "--child", lang, "--out", str(out)], env=env)
            if result.returncode:
                return result.returncode
    for png in sorted(out.glob("*.png")):
        print(png.relative_to(ROOT) if png.is_relative_to(ROOT) else png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
