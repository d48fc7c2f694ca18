"""The training page (Tools → Train on your data (LoRA)…) with real widgets and REAL training of the
tiny LLaMA in the job's child process: the data preview and its per-row problems, start → loss
points in the plot → done → the adapter loads in the window; stop → resume continues from the
checkpoint; closing while training asks; a GGUF base is refused with the conversion offered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from tests.fixtures.markers import needs_bitsandbytes_cpu

QA = "What is Bubble?##Bubble is a private chatbot.\nWho made the moon cheese?##The blue fox made it.\n" * 4


def _ctx(model_path: str) -> Any:
    from bubble_desktop.core.chat.service import ChatService
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.llm.loader import load_model
    from bubble_desktop.ui.main_window import AppContext

    paths = Paths.default().ensure()
    settings = Settings()
    settings.model.path = model_path
    settings.sampling.system_prompt = ""
    store = ConversationStore(paths.chats_db)
    return AppContext(paths, settings, store, ChatService(paths, None, None, store), load_model)


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    f = tmp_path / "qa.txt"
    f.write_text(QA, encoding="utf-8")
    return f


@pytest.fixture
def dialog(qtbot: Any, tiny_model_dir: Path) -> Iterator[Any]:
    from bubble_desktop.ui.training_dialog import TrainingDialog

    ctx = _ctx(str(tiny_model_dir))
    d = TrainingDialog(ctx)
    qtbot.addWidget(d)
    d.show()
    yield d
    d.shutdown()
    ctx.store.close()


def _fast(d: Any, epochs: float) -> None:
    d.advanced_button.setChecked(True)
    d.lr_spin.setValue(0.01)
    d.epochs_spin.setValue(epochs)


def _answer_close_box(button: str) -> None:
    box = QApplication.activeModalWidget()
    assert isinstance(box, QMessageBox) and box.objectName() == "trainingCloseBox"
    next(b for b in box.buttons() if b.text() == button).click()


def _wait_preview(qtbot: Any, d: Any) -> None:
    qtbot.waitUntil(lambda: d._preview_task is None and not d._preview_timer.isActive(), timeout=30_000)
    qtbot.waitUntil(lambda: d._check is not None, timeout=30_000)


def test_preview_shows_the_rows_and_a_bad_rows_problem(qtbot: Any, dialog: Any, tmp_path: Path) -> None:
    data = tmp_path / "mixed.jsonl"
    data.write_text(
        '{"prompt": "Hi", "response": "Hello"}\n'
        '{"prompt": "x"\n'
        '{"instruction": "Name a colour", "output": "Blue"}\n'
        '{"prompt": "Empty?", "response": ""}\n',
        encoding="utf-8",
    )
    assert not dialog.start_button.isEnabled()  # no data yet
    dialog.add_data_files([str(data)])
    _wait_preview(qtbot, dialog)
    text = dialog.preview_label.text()
    assert "3 rows understood, 2 usable" in text and "1 rows cannot be read" in text
    rows = [
        [dialog.problems.topLevelItem(i).text(c) for c in range(3)]
        for i in range(dialog.problems.topLevelItemCount())
    ]
    assert ["Error", "mixed.jsonl:2", rows[0][2]] == rows[0] and "not valid JSON" in rows[0][2]
    assert ["Warning", "mixed.jsonl:4", "empty answer (skipped in training)"] in rows
    # the defaults picked for this machine and the memory estimate, before anything runs
    assert dialog.rank_spin.specialValueText() == "Auto (8)"
    assert dialog.max_len_spin.specialValueText() == "Auto (512)"
    assert "MB needed" in dialog.estimate_label.text() and "It fits." in dialog.estimate_label.text()
    # an unreadable row stops Start until it is fixed or skipped
    assert not dialog.start_button.isEnabled()
    dialog.skip_bad.setChecked(True)
    assert dialog.start_button.isEnabled()


@needs_bitsandbytes_cpu
def test_choosing_4_bit_base_weights_plans_qlora(qtbot: Any, dialog: Any, qa_file: Path) -> None:
    dialog.add_data_files([str(qa_file)])
    _wait_preview(qtbot, dialog)
    full = dialog._check.plan
    assert not full.qlora and "QLoRA" not in dialog.estimate_label.text()
    dialog.advanced_button.setChecked(True)
    combo = dialog.quantization_combo
    assert combo.isVisible() and combo.currentData() == "auto"
    combo.setCurrentIndex(combo.findData("4bit"))
    assert dialog.settings().quantization == "4bit"
    qtbot.waitUntil(lambda: dialog._check is not None and dialog._check.plan.qlora, timeout=30_000)
    plan = dialog._check.plan
    assert plan.estimate.parts["weights"] < full.estimate.parts["weights"] / 4
    assert "The base model loads in 4 bits (QLoRA)" in dialog.estimate_label.text()
    assert dialog.start_button.isEnabled()


def test_train_in_the_window_then_use_the_adapter(qtbot: Any, tiny_model_dir: Path, qa_file: Path) -> None:
    from bubble_desktop.ui.main_window import MainWindow

    ctx = _ctx(str(tiny_model_dir))
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    try:
        tools = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Tools")
        train = next(a for a in tools.actions() if "LoRA" in a.text())
        train.trigger()
        d = window.training_dialog
        assert d is not None and d.isVisible()
        assert (
            d.base_label.text() == str(tiny_model_dir) and d.name_edit.text() == f"{tiny_model_dir.name}-lora"
        )
        d.add_data_files([str(qa_file)])
        _fast(d, 2)
        _wait_preview(qtbot, d)
        assert "8 rows understood, 8 usable" in d.preview_label.text()
        qtbot.mouseClick(d.start_button, Qt.MouseButton.LeftButton)
        assert d.is_training and not d.start_button.isEnabled() and d.cancel_button.isEnabled()
        qtbot.waitUntil(lambda: len(d.plot.points) >= 1, timeout=120_000)
        assert d.plot.total_steps == 8 and d.progress.maximum() == 8
        assert "Step " in d.stats_label.text() and "tokens/s" in d.stats_label.text()

        # closing while training asks; "keep" lets it train on hidden, and the page comes back at the end
        QTimer.singleShot(100, lambda: _answer_close_box("Keep training in the background"))
        d.reject()
        assert not d.isVisible() and d.is_training
        qtbot.waitUntil(lambda: d.use_button.isVisible(), timeout=120_000)
        assert d.isVisible()
        adapter = Path(d._adapter)
        assert adapter == Paths.default().models_dir / "lora" / f"{tiny_model_dir.name}-lora"
        assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_card.json").is_file()
        assert [s for s, _ in d.plot.points] == list(range(1, 9)) and d.plot.val_points
        assert d.progress.value() == 8 and "Done: loss" in d.log_view.toPlainText()
        qtbot.waitUntil(lambda: d._job is None, timeout=10_000)  # the child exited and was reaped
        assert d.start_button.isEnabled() and d.merge_button.isVisible()

        with qtbot.waitSignal(window.model_ready, timeout=120_000) as ready:
            qtbot.mouseClick(d.use_button, Qt.MouseButton.LeftButton)
        assert ready.args[0].lora == str(adapter)
        assert window.settings.model.lora_path == str(adapter)
        saved = json.loads(ctx.paths.settings_file.read_text(encoding="utf-8"))
        assert saved["model"]["lora_path"] == str(adapter)

        # merged into a copy of the model, which loads without the adapter
        qtbot.mouseClick(d.merge_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: d.use_merged_button.isVisible(), timeout=120_000)
        merged = Path(d._merged)
        assert merged.parent == ctx.paths.models_dir and (merged / "config.json").is_file()
        assert not (merged / "adapter_config.json").exists()
        with qtbot.waitSignal(window.model_ready, timeout=120_000) as ready:
            qtbot.mouseClick(d.use_merged_button, Qt.MouseButton.LeftButton)
        assert ready.args[0].lora is None and window.settings.model.path == str(merged)
        assert window.settings.model.lora_path == ""
    finally:
        window.close()
        ctx.store.close()


def test_stop_then_resume_continues_and_closing_asks(qtbot: Any, dialog: Any, qa_file: Path) -> None:
    d = dialog
    d.add_data_files([str(qa_file)])
    _fast(d, 50)  # 200 steps: stopped long before the end
    d.name_edit.setText("resumable")
    _wait_preview(qtbot, d)
    assert not d.resume_button.isEnabled()
    assert d.start()
    qtbot.waitUntil(lambda: len(d.plot.points) >= 3, timeout=120_000)
    qtbot.mouseClick(d.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: d._job is None, timeout=120_000)
    stopped = d.progress.value()
    assert 3 <= stopped < 200
    assert f"Stopped at step {stopped}" in d.stats_label.text()
    assert d.resume_button.isEnabled() and f"resumed from step {stopped}" in d.resume_label.text()

    qtbot.mouseClick(d.resume_button, Qt.MouseButton.LeftButton)
    assert [s for s, _ in d.plot.points] == list(range(1, stopped + 1))  # the history before the stop
    qtbot.waitUntil(lambda: d.plot.points[-1][0] >= stopped + 2, timeout=120_000)
    assert f"Resumed at step {stopped}." in d.log_view.toPlainText()
    steps = [s for s, _ in d.plot.points]
    assert steps == list(range(1, steps[-1] + 1))  # continued where it stopped, nothing repeated

    # closing while training asks; "stop" saves a checkpoint and hides the page
    QTimer.singleShot(100, lambda: _answer_close_box("Stop and save a checkpoint"))
    d.reject()
    assert not d.isVisible()
    qtbot.waitUntil(lambda: d._job is None, timeout=120_000)
    assert "Stopped at step" in d.stats_label.text() and d.resume_button.isEnabled()


def test_saved_conversations_become_training_data(qtbot: Any, dialog: Any) -> None:
    store = dialog._ctx.store
    cid = store.create_conversation("Cheese facts")
    for role, text in (
        ("user", "Who made the moon cheese?"),
        ("assistant", "The blue fox made it."),
        ("user", "When?"),
        ("assistant", "Last Tuesday."),
    ):
        store.add_message(cid, role, text, status="complete")
    assert dialog.add_conversations([cid])
    _wait_preview(qtbot, dialog)
    assert "2 rows understood, 2 usable" in dialog.preview_label.text()
    item = dialog.data_list.item(0)
    assert item.text() == "1 saved conversation(s): 2 answers"
    path = Path(item.data(Qt.ItemDataRole.UserRole))
    assert path.parent == dialog._ctx.paths.data_dir / "training"  # kept: Resume reads the same data
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[1]["history"] == [["Who made the moon cheese?", "The blue fox made it."]]
    assert dialog.start_button.isEnabled()


def test_a_gguf_base_is_refused_and_the_conversion_offered(
    qtbot: Any, tiny_gguf: Path, qa_file: Path
) -> None:
    from bubble_desktop.ui.training_dialog import TrainingDialog

    ctx = _ctx(str(tiny_gguf))
    d = TrainingDialog(ctx)
    qtbot.addWidget(d)
    d.show()
    try:
        d.add_data_files([str(qa_file)])
        assert "GGUF models cannot be trained" in d.base_message.text() and d.base_message.isVisible()
        assert d.convert_button.isVisible() and not d.start_button.isEnabled()
        assert not d.start()
        assert "GGUF models cannot be trained" in d.stats_label.text()
        _wait_preview(qtbot, d)  # the rows are still previewed
        assert "8 rows understood" in d.preview_label.text()
        with qtbot.waitSignal(d.convert_requested, timeout=1000) as sig:
            qtbot.mouseClick(d.convert_button, Qt.MouseButton.LeftButton)
        assert sig.args == [str(tiny_gguf)]
        d.set_base_model(str(qa_file.parent))  # a folder without config.json
        _wait_preview(qtbot, d)
        qtbot.waitUntil(lambda: "config.json" in d.base_message.text() or "model" in d.base_message.text())
        assert d.base_message.isVisible() and not d.start_button.isEnabled()
    finally:
        d.shutdown()
        ctx.store.close()


def test_the_training_page_in_chinese(qtbot: Any, qapp: Any, tiny_gguf: Path) -> None:
    from bubble_desktop.ui.i18n import install_translator
    from bubble_desktop.ui.training_dialog import TrainingDialog

    assert install_translator(qapp, "zh_CN") == "zh_CN"
    ctx = _ctx(str(tiny_gguf))
    try:
        d = TrainingDialog(ctx)
        qtbot.addWidget(d)
        assert d.windowTitle() == "用你的数据训练（LoRA）"
        assert d.start_button.text() == "开始训练" and d.resume_button.text() == "继续训练"
        assert d.base_message.text().startswith("GGUF 模型无法训练")
        assert d.epochs_spin.specialValueText() == "自动"
        d.shutdown()
    finally:
        install_translator(qapp, "en")
        ctx.store.close()
