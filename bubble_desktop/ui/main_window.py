"""The main window: conversations sidebar, Chat and Knowledge tabs, status bar, model loading.

Everything slow happens elsewhere: the model loads and answers on the inference thread (via
:class:`InferenceController`), knowledge bases live on their own worker (D2's KnowledgeTab and its
controller), GGUF import runs as a BackgroundTask. This class turns user actions into requests
and results into widgets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6 import QtCore  # QtCore.Qt on use: its first touch costs ~20 ms (ui/theme.py)
from PySide6.QtCore import QCoreApplication, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import bubble_desktop
from bubble_desktop import APP_NAME
from bubble_desktop.core.i18n import localize
from bubble_desktop.ui.dialogs import ask

if TYPE_CHECKING:  # the window's parts are imported by build(): the bare frame shows first
    from bubble_desktop.core.llm.base import LoadRequest, ModelInfo
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import Settings
    from bubble_desktop.ui.chat_view import MessageWidget
    from bubble_desktop.ui.inference_worker import AnswerMeta, AnswerResult, LoadFailure
    from bubble_desktop.ui.source_text import SourceView
    from bubble_desktop.ui.workers import BackgroundTask

log = logging.getLogger(__name__)
WINDOW_STATE_FILE = "window.ini"


@dataclass
class AppContext:
    """What the window works with; app.py builds the real one, tests build their own."""

    paths: Paths
    settings: Settings
    store: Any  # ConversationStore
    chat_service: Any  # ChatService
    load_function: Callable[..., Any]  # load_model(LoadRequest, progress) -> ChatModel
    knowledge: Any | None = None  # KnowledgeService
    consent: Any | None = None  # ConsentStore
    import_gguf: Callable[..., Path] | None = None
    notices: list[str] = field(default_factory=list)  # e.g. a corrupt settings file moved aside
    # builds the KnowledgeService after the window is shown (keeps start-up light); see finish_startup
    knowledge_factory: Callable[[], Any] | None = None
    model_catalog: Any | None = None  # the Models page's catalog (None: the one shipped in resources/)
    machine: Any | None = None  # what the catalog's fit is judged against (None: measured here)


@dataclass
class _LiveAnswer:
    """An answer being written (or waiting for the model), shown or not: switching chats leaves it
    running; its text so far is kept here to show it again when the user comes back."""

    request_id: int
    kind: str  # ask / edit / regenerate
    question: str
    conversation_id: int | None  # None until the worker saved a new chat
    target_id: int | None  # the question edited or the answer regenerated
    widget: MessageWidget | None  # where it streams while its conversation is on screen
    question_widget: MessageWidget | None = None
    message_id: int | None = None
    meta: AnswerMeta | None = None
    parts: list[str] = field(default_factory=list)
    created_early: bool = False  # its new chat was saved before the worker took the question


def model_name(path: str) -> str:
    return Path(path).name or path


class MainWindow(QMainWindow):
    """The app's one window."""

    model_ready = Signal(object)  # ModelInfo (tests and the smoke test wait on it)

    def __init__(
        self, ctx: AppContext | None, parent: QWidget | None = None, state_file: Path | None = None
    ) -> None:
        """With ``ctx`` the whole window is built; with ``None`` only the frame (title, size, a
        "Starting…" placeholder), cheap enough to show at once; ``build(ctx)`` completes it.
        ``state_file`` keeps the window's size, position and splitters (default: window.ini in the
        config folder of ``ctx``)."""
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_NAME)
        self.resize(1180, 780)
        self._closing = False
        self._quit_confirmed = False  # File → Quit asked already
        self._built = False
        self._state_file = state_file
        self._geometry_restored = False
        self._shown_once = False
        if state_file is not None:
            self._restore_geometry()
        self._source_viewer: Any = None
        if ctx is None:
            self.setCentralWidget(StartingView())
            return
        self.build(ctx)

    @property
    def is_built(self) -> bool:
        return self._built

    def build(self, ctx: AppContext) -> None:
        """Build the window's parts (sidebar, chat, knowledge, status bar, menus) for ``ctx``."""
        from bubble_desktop.ui.chat_pane import ChatPane
        from bubble_desktop.ui.conversations import ConversationsSidebar
        from bubble_desktop.ui.first_run import FirstRunPanel
        from bubble_desktop.ui.inference_worker import InferenceController
        from bubble_desktop.ui.status_bar import ModelStatusBar

        self.ctx = ctx
        self.settings = ctx.settings
        self._live: dict[int, _LiveAnswer] = {}  # answers being written, by request id
        self._conversation_id: int | None = None
        self._gguf_task: BackgroundTask | None = None
        self.last_error_box: QMessageBox | None = None  # the latest report_error box (tests look at it)

        self.inference = InferenceController(ctx.load_function, ctx.chat_service, self)
        self.inference.model_loading.connect(self._on_inference_model_loading)
        self.inference.load_progressed.connect(self._on_inference_load_progressed)
        self.inference.model_loaded.connect(self._on_inference_model_loaded)
        self.inference.model_load_failed.connect(self._on_inference_model_load_failed)
        self.inference.answer_began.connect(self._on_inference_answer_began)
        self.inference.answer_started.connect(self._on_inference_answer_started)
        self.inference.text_arrived.connect(self._on_inference_text_arrived)
        self.inference.answer_finished.connect(self._on_inference_answer_finished)

        from bubble_desktop.ui.api_control import ApiControl

        # the local OpenAI-compatible API (Settings → API server): serves the model loaded here
        self.api = ApiControl(self.inference.model_lock, ctx.knowledge, ctx.chat_service, self)
        self.api.state_changed.connect(self._on_api_state_changed)

        from bubble_desktop.ui.models_dialog import Downloads

        # model downloads live here, not in the Models page: they go on when the page is closed
        self.downloads = Downloads(ctx.paths, ctx.settings.web.proxy, ctx.model_catalog, self)
        self.downloads.progressed.connect(self._on_downloads_progressed)
        self.downloads.finished.connect(self._on_downloads_finished)
        self.downloads.failed.connect(self._on_downloads_failed)
        self.models_dialog: Any = None
        self.training_dialog: Any = None  # ui/training_dialog.py, kept while a job runs
        self._first_run_download = ""
        self._recommended_offered = False

        # ---- widgets -----------------------------------------------------------------
        self.sidebar = ConversationsSidebar(ctx.store)
        self.sidebar.conversation_selected.connect(self._on_sidebar_conversation_selected)
        self.sidebar.conversation_deleted.connect(self._on_sidebar_conversation_deleted)
        self.sidebar.conversation_renamed.connect(self._on_sidebar_conversation_renamed)

        self.chat = ChatPane()
        self.chat.send_requested.connect(self._on_chat_send_requested)
        self.chat.edit_submitted.connect(self._on_chat_edit_submitted)
        self.chat.stop_requested.connect(self._on_chat_stop_requested)
        self.chat.regenerate_requested.connect(self._on_chat_regenerate_requested)
        self.chat.options_changed.connect(self._on_chat_options_changed)
        self.chat.source_activated.connect(self._on_chat_source_activated)
        self.chat.version_requested.connect(self._on_chat_version_requested)

        self.first_run = FirstRunPanel()
        self.first_run.model_folder_chosen.connect(self._on_first_run_model_folder_chosen)
        self.first_run.gguf_chosen.connect(self._on_first_run_gguf_chosen)
        self.first_run.settings_requested.connect(self.open_settings)
        self.first_run.recommended_download_requested.connect(self._on_first_run_download_requested)
        self.first_run.models_page_requested.connect(self.open_models)
        self.first_run.catalog_entry_activated.connect(self._on_first_run_catalog_entry_activated)

        self.chat_stack = QStackedWidget()
        self.chat_stack.addWidget(self.first_run)
        self.chat_stack.addWidget(self.chat)

        self.knowledge_tab = self._make_knowledge_tab()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.chat_stack, self.tr("Chat"))
        self.tabs.addTab(self.knowledge_tab, self.tr("Knowledge"))

        splitter = QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([250, 930])
        splitter.setChildrenCollapsible(False)
        self.splitter = splitter
        self.setCentralWidget(splitter)
        if self._state_file is None:
            self._state_file = ctx.paths.config_dir / WINDOW_STATE_FILE
        if not self._geometry_restored:
            self._restore_geometry()
        self._restore_splitter(self.splitter, "main_splitter")

        self.status = ModelStatusBar()
        self.setStatusBar(self.status)
        self._build_menus()
        self._show_chat_or_first_run()
        for notice in ctx.notices:
            self.status.showMessage(localize(notice), 15000)
        self._built = True
        if not self.has_model_configured():  # reading the catalog costs ~0.2 s: only when it is shown
            self._offer_recommended_model()
        if self.settings.api.enabled:
            self.api.apply(self.settings, None)  # 503 "no model" until one is loaded

    # ---- construction -----------------------------------------------------------------
    def _make_knowledge_tab(self) -> QWidget:
        if self.ctx.knowledge is not None:
            try:
                from bubble_desktop.ui.knowledge_tab import KnowledgeTab
            except ImportError:
                log.exception("the knowledge tab cannot be built")
            else:
                tab = KnowledgeTab(self.ctx.knowledge)
                tab.bases_changed.connect(self._on_knowledge_bases_changed)
                tab.error_shown.connect(self._on_knowledge_tab_error_shown)
                self._restore_splitter(tab.splitter, "knowledge_splitter")
                return tab
        placeholder = QWidget()
        layout = QVBoxLayout(placeholder)
        label = QLabel(
            self.tr("Opening your knowledge bases…")
            if self.ctx.knowledge_factory is not None
            else self.tr("Knowledge bases are not available.")
        )
        label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(label)
        return placeholder

    # ---- window state: size, position, splitters ---------------------------------------
    def _window_state(self) -> QtCore.QSettings | None:
        if self._state_file is None:
            return None
        return QtCore.QSettings(str(self._state_file), QtCore.QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        """The size and place of last time, kept on the screen it is on (or the primary one)."""
        state = self._window_state()
        self._geometry_restored = True
        data = state.value("geometry") if state is not None else None
        if isinstance(data, QtCore.QByteArray) and not data.isEmpty():
            self.restoreGeometry(data)
        self.clamp_to_screen()

    def clamp_to_screen(self) -> None:
        """Shrink and move the window so that all of it is on a screen's available area."""
        from PySide6.QtGui import QGuiApplication

        frame = self.frameGeometry()
        screen = QGuiApplication.screenAt(frame.center()) or QGuiApplication.primaryScreen()
        if screen is None:
            return
        area = screen.availableGeometry()
        extra_w = frame.width() - self.width()  # the window manager's frame
        extra_h = frame.height() - self.height()
        width = max(min(self.width(), area.width() - extra_w), min(900, area.width()))
        height = max(min(self.height(), area.height() - extra_h), min(600, area.height()))
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        x = min(max(frame.x(), area.left()), max(area.left(), area.right() + 1 - frame.width()))
        y = min(max(frame.y(), area.top()), max(area.top(), area.bottom() + 1 - frame.height()))
        if (x, y) != (frame.x(), frame.y()):
            self.move(x, y)

    def _restore_splitter(self, splitter: QSplitter, key: str) -> None:
        state = self._window_state()
        data = state.value(key) if state is not None else None
        if isinstance(data, QtCore.QByteArray) and not data.isEmpty():
            splitter.restoreState(data)

    def save_window_state(self) -> None:
        """Remember the size, position and splitters for the next start."""
        state = self._window_state()
        if state is None:
            return
        state.setValue("geometry", self.saveGeometry())
        if self._built:
            state.setValue("main_splitter", self.splitter.saveState())
            knowledge_splitter = getattr(self.knowledge_tab, "splitter", None)
            if isinstance(knowledge_splitter, QSplitter):
                state.setValue("knowledge_splitter", knowledge_splitter.saveState())
        state.sync()

    @Slot(str, str)
    def _on_knowledge_tab_error_shown(self, message: str, hint: str) -> None:
        # the tab shows it in its own label; the user may be on the Chat tab
        if self.tabs.currentWidget() is not self.knowledge_tab:
            self.report_error(self.tr("Knowledge bases"), message, hint)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu(self.tr("&File"))
        self.new_chat_action = QAction(self.tr("&New chat"), self)
        self.new_chat_action.setShortcut(QKeySequence.StandardKey.New)
        self.new_chat_action.triggered.connect(self.new_chat)
        file_menu.addAction(self.new_chat_action)
        self.export_markdown_action = QAction(self.tr("&Export chat as Markdown…"), self)
        self.export_markdown_action.triggered.connect(self._on_export_markdown_triggered)
        file_menu.addAction(self.export_markdown_action)
        self.export_json_action = QAction(self.tr("Export chat as &JSON…"), self)
        self.export_json_action.triggered.connect(self._on_export_json_triggered)
        file_menu.addAction(self.export_json_action)
        file_menu.aboutToShow.connect(self._on_file_menu_about_to_show)
        file_menu.addSeparator()
        models = QAction(self.tr("&Models…"), self)
        models.triggered.connect(self.open_models)
        file_menu.addAction(models)
        choose = QAction(self.tr("Choose &model folder…"), self)
        choose.triggered.connect(self.first_run._on_folder_button_clicked)
        file_menu.addAction(choose)
        gguf = QAction(self.tr("&Open GGUF file…"), self)
        gguf.triggered.connect(self.first_run._on_gguf_button_clicked)
        file_menu.addAction(gguf)
        convert = QAction(self.tr("Con&vert GGUF to a transformers model (for LoRA)…"), self)
        convert.triggered.connect(self._on_convert_gguf_triggered)
        file_menu.addAction(convert)
        self.reload_action = QAction(self.tr("&Reload model"), self)
        self.reload_action.triggered.connect(self.load_configured_model)
        file_menu.addAction(self.reload_action)
        file_menu.addSeparator()
        quit_action = QAction(self.tr("&Quit"), self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.quit_asking)
        file_menu.addAction(quit_action)

        tools = bar.addMenu(self.tr("&Tools"))
        settings_action = QAction(self.tr("&Settings…"), self)
        settings_action.setShortcut(QKeySequence("Ctrl+,"))
        settings_action.triggered.connect(self.open_settings)
        tools.addAction(settings_action)
        train = QAction(self.tr("&Train on your data (LoRA)…"), self)
        train.triggered.connect(self.open_training)
        tools.addAction(train)
        open_data = QAction(self.tr("Open &data folder"), self)
        open_data.triggered.connect(self._on_open_data_triggered)
        tools.addAction(open_data)

        help_menu = bar.addMenu(self.tr("&Help"))
        about = QAction(self.tr("&About O.Bubble"), self)
        about.triggered.connect(self._on_about_triggered)
        help_menu.addAction(about)

    @Slot()
    def _on_file_menu_about_to_show(self) -> None:
        has_chat = self._conversation_id is not None
        self.export_markdown_action.setEnabled(has_chat)
        self.export_json_action.setEnabled(has_chat)

    @Slot()
    def _on_export_markdown_triggered(self) -> None:
        if self._conversation_id is not None:
            self.sidebar.export(self._conversation_id, "md")

    @Slot()
    def _on_export_json_triggered(self) -> None:
        if self._conversation_id is not None:
            self.sidebar.export(self._conversation_id, "json")

    @Slot()
    def finish_startup(self) -> None:
        """Right after the window is shown: open the knowledge bases, then load the model."""
        factory = self.ctx.knowledge_factory
        if self.ctx.knowledge is None and factory is not None and not self._closing:
            try:
                self.attach_knowledge(factory())
            except Exception as exc:  # the chat still works without knowledge bases
                log.exception("knowledge bases could not be opened")
                self.status.showMessage(
                    self.tr("Knowledge bases could not be opened: %1").replace("%1", str(exc))
                )
        self.load_configured_model()

    def attach_knowledge(self, service: Any) -> None:
        """Give the window (and the chat service) the knowledge service; builds the Knowledge tab."""
        self.ctx.knowledge = service
        self.api.set_knowledge(service)
        if hasattr(self.ctx.chat_service, "knowledge"):
            self.ctx.chat_service.knowledge = service  # read by the worker at each question
        old = self.knowledge_tab
        index = self.tabs.indexOf(old)
        self.knowledge_tab = self._make_knowledge_tab()
        self.tabs.removeTab(index)
        self.tabs.insertTab(index, self.knowledge_tab, self.tr("Knowledge"))
        old.deleteLater()

    # ---- model -------------------------------------------------------------------------
    def has_model_configured(self) -> bool:
        m = self.settings.model
        return bool(m.path) or (m.backend == "openai" and bool(m.endpoint_url))

    def _show_chat_or_first_run(self) -> None:
        configured = self.has_model_configured()
        self.chat_stack.setCurrentWidget(self.chat if configured else self.first_run)
        if not configured and self._built:
            self._offer_recommended_model()

    def load_request(self) -> LoadRequest:
        from bubble_desktop.core.llm.loader import from_settings

        path = self.settings.model.path
        trusted = bool(self.ctx.consent is not None and path and self.ctx.consent.is_trusted(path))
        request = from_settings(self.settings.model, trust_remote_code=trusted)
        if self.settings.model.backend == "openai":
            request.extra.update(
                backend="openai",
                endpoint_url=self.settings.model.endpoint_url,
                endpoint_model=self.settings.model.endpoint_model,
                endpoint_api_key=self.settings.model.endpoint_api_key,
            )
        return request

    @Slot()
    def load_configured_model(self) -> None:
        """Load the model from the settings in the background (the window stays usable)."""
        if not self.has_model_configured():
            self._show_chat_or_first_run()
            return
        self.inference.load_model(self.load_request())

    def set_model_folder(self, folder: str) -> None:
        self.settings.model.path = folder
        self._save_settings()
        self._show_chat_or_first_run()
        self.load_configured_model()

    @Slot(str)
    def _on_inference_model_loading(self, path: str) -> None:
        if self.api.address:
            self.api.set_model(None)  # the old model is about to be unloaded
        self.status.show_loading(model_name(path))

    @Slot(float, str)
    def _on_inference_load_progressed(self, fraction: float, what: str) -> None:
        self.status.show_progress(fraction, what)

    @Slot(object)
    def _on_inference_model_loaded(self, info: ModelInfo) -> None:
        self.status.show_ready(info)
        if self.settings.api.enabled:
            self.api.apply(self.settings, self.inference.loaded_model)
        self.model_ready.emit(info)

    @Slot(object, object)
    def _on_inference_model_load_failed(self, failure: LoadFailure, request: LoadRequest) -> None:
        if failure.cancelled:
            return
        if failure.needs_consent and self.ctx.consent is not None and not self._closing:
            if self._ask_remote_code_consent(request.path, failure):
                self.ctx.consent.trust(request.path)
                self.inference.load_model(replace(request, trust_remote_code=True))
                return
        self.status.show_failed(failure.message)
        self.report_error(self.tr("The model could not be loaded"), failure.message, failure.hint)

    def first_run_visible(self) -> bool:
        """Whether the first-run panel is what the user sees now (the Chat tab shows it)."""
        return (
            self.chat_stack.currentWidget() is self.first_run and self.tabs.currentWidget() is self.chat_stack
        )

    def report_error(self, title: str, message: str, hint: str = "") -> None:
        """Tell the user about a failure where they will see it: on the first-run panel when that is on
        screen, otherwise in a non-modal box (never only on a hidden widget)."""
        if self.first_run_visible():
            self.first_run.show_message(f"{message}\n{hint}".strip(), error=True)
            return
        if self._closing:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("errorBox")
        box.setInformativeText(hint)
        box.setModal(False)
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
        self.last_error_box = box

    def _ask_remote_code_consent(self, path: str, failure: LoadFailure) -> bool:
        return (
            ask(
                self,
                name="remoteCodeConsent",
                icon=QMessageBox.Icon.Warning,
                title=self.tr("Run this model's own code?"),
                text=self.tr(
                    "The model in %1 ships its own Python code (for example ChatGLM). Running it gives that "
                    "code the same access to your computer as Bubble has."
                ).replace("%1", path),
                informative=self.tr(
                    "Only allow this for models from publishers you trust. "
                    "Bubble remembers your choice for this folder."
                ),
                choices=[("allow", self.tr("Allow and load"), QMessageBox.ButtonRole.AcceptRole)],
            )
            == "allow"
        )

    # ---- first run ---------------------------------------------------------------------
    @Slot(str)
    def _on_first_run_model_folder_chosen(self, folder: str) -> None:
        self.set_model_folder(folder)

    @Slot(str)
    def _on_first_run_gguf_chosen(self, path: str) -> None:
        self.set_model_folder(path)  # a .gguf opens as it is, through llama.cpp

    @Slot()
    def _on_convert_gguf_triggered(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, self.tr("Convert a GGUF file"), "", self.tr("GGUF models (*.gguf);;All files (*)")
        )
        if path:
            self.import_gguf(path)

    def import_gguf(self, path: str) -> None:
        """Convert a GGUF file into a transformers model folder in the background (for LoRA work),
        then load it."""
        importer = self.ctx.import_gguf
        if importer is None:
            return
        if self._gguf_task is not None and self._gguf_task.is_running():
            self.report_error(
                self.tr("A conversion is running"),
                self.tr("Bubble is already converting a GGUF file."),
                self.tr("Wait until it has finished, then try again."),
            )
            return
        models_dir = self.ctx.paths.models_dir
        from bubble_desktop.core.llm.gguf_import import default_name

        existing = models_dir / default_name(Path(path))
        options: dict[str, Any] = {}
        if existing.is_dir() and any(existing.iterdir()):
            choice = self._ask_about_existing_conversion(existing)
            if choice == "use":
                self.set_model_folder(str(existing))
                return
            if choice != "replace":
                return
            options["overwrite"] = True

        def run(progress: Callable[[float, str], None], _cancel: Any) -> Path:
            return importer(path, models_dir=models_dir, progress=progress, **options)

        from bubble_desktop.ui.workers import BackgroundTask

        task = BackgroundTask(run, "bubble-gguf-import", self)
        task.progressed.connect(self._on_gguf_task_progressed)
        task.succeeded.connect(self._on_gguf_task_succeeded)
        task.failed.connect(self._on_gguf_task_failed)
        self._gguf_task = task
        self.first_run.show_progress(0.0, self.tr("Importing %1").replace("%1", Path(path).name))
        task.start()

    def _ask_about_existing_conversion(self, folder: Path) -> str:
        """'use' the converted model already there, 'replace' it, or '' (cancel)."""
        return ask(
            self,
            name="existingConversion",
            title=self.tr("Already converted"),
            text=self.tr("This GGUF file was converted before, into %1.").replace("%1", str(folder)),
            informative=self.tr("Load that model, or convert the file again and replace it?"),
            choices=[
                ("use", self.tr("Load it"), QMessageBox.ButtonRole.AcceptRole),
                ("replace", self.tr("Convert again"), QMessageBox.ButtonRole.DestructiveRole),
            ],
            default="use",
        )

    @Slot(float, str)
    def _on_gguf_task_progressed(self, fraction: float, what: str) -> None:
        self.first_run.show_progress(fraction, what)
        self.status.showMessage(self.tr("Importing GGUF: %1").replace("%1", what))

    @Slot(object)
    def _on_gguf_task_succeeded(self, folder: Any) -> None:
        self.first_run.show_message(self.tr("Imported into %1").replace("%1", str(folder)))
        self.status.clearMessage()
        self.set_model_folder(str(folder))

    @Slot(str, str)
    def _on_gguf_task_failed(self, message: str, hint: str) -> None:
        self.status.clearMessage()
        if not self.first_run_visible():
            self.first_run.show_message("")  # its progress bar and disabled buttons are over too
        self.report_error(self.tr("The GGUF file could not be converted"), message, hint)

    # ---- models page and downloads -------------------------------------------------------
    def _offer_recommended_model(self) -> None:
        """The first-run panel's main action: the catalog model that fits this computer best."""
        if self._recommended_offered:
            return
        self._recommended_offered = True
        try:
            from bubble_desktop.core.models.machine import detect, recommend

            machine = self.ctx.machine or detect(self.ctx.paths.models_dir, gpu=False)
            ui_language: str = self.settings.appearance.language
            if ui_language == "system":
                from PySide6.QtCore import QLocale

                ui_language = QLocale.system().name()
            language = "zh" if ui_language.startswith("zh") else "en"
            best = recommend(self.downloads.catalog, machine, "chat", language)
        except Exception:  # a missing or broken catalog must not stop the window
            log.exception("no recommended model")
            return
        from bubble_desktop.core.models.machine import fit
        from bubble_desktop.ui.models_dialog import human_size

        verdicts = {
            "runs well": self.tr("runs well"),
            "tight": self.tr("tight"),
            "too big": self.tr("too big"),
        }
        chat = sorted(self.downloads.catalog.of_kind("chat"), key=lambda e: (e.ram_gb, e.name))
        self.first_run.show_catalog(
            [
                (e.id, e.name, f"{e.ram_gb:.1f} GB", ", ".join(e.languages), verdicts[fit(e, machine)])
                for e in chat
            ]
        )
        if best:
            e = best[0]
            self.first_run.set_recommended(e.id, e.name, human_size(e.size_bytes))

    @Slot()
    def open_models(self) -> None:
        from bubble_desktop.ui.models_dialog import ModelsDialog

        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.downloads, self.ctx.machine, self)
            self.models_dialog.use_for_chat.connect(self._on_models_dialog_use_for_chat)
            self.models_dialog.use_for_knowledge.connect(self._on_models_dialog_use_for_knowledge)
        self.models_dialog.refresh()
        self.models_dialog.show()
        self.models_dialog.raise_()

    @Slot()
    def open_training(self) -> None:
        from bubble_desktop.ui.training_dialog import TrainingDialog

        if self.training_dialog is None:
            self.training_dialog = TrainingDialog(self.ctx, self)
            self.training_dialog.use_model_requested.connect(self._on_training_dialog_use_model_requested)
            self.training_dialog.convert_requested.connect(self.import_gguf)
            self.model_ready.connect(self.training_dialog._on_window_model_ready)
        self.training_dialog.show()
        self.training_dialog.raise_()

    @Slot(str, str)
    def _on_training_dialog_use_model_requested(self, model: str, lora: str) -> None:
        new = self.settings.model_copy(deep=True)
        new.model.backend, new.model.path, new.model.lora_path = "transformers", model, lora
        self._on_settings_dialog_settings_changed(new)  # reloads the model
        self._save_settings()

    @Slot(str)
    def _on_first_run_catalog_entry_activated(self, entry_id: str) -> None:
        self.open_models()
        self.models_dialog.select(entry_id)

    @Slot(str)
    def _on_first_run_download_requested(self, entry_id: str) -> None:
        self._first_run_download = entry_id
        self.downloads.start(entry_id)
        self.first_run.show_progress(0.0, self.tr("Downloading %1").replace("%1", entry_id))

    @Slot(str, object)
    def _on_downloads_progressed(self, target: str, p: Any) -> None:
        self.status.showMessage(
            self.tr("Downloading %1: %2").replace("%1", target).replace("%2", f"{p.fraction:.0%}"), 5000
        )
        if target == self._first_run_download:
            self.first_run.show_progress(p.fraction, self.tr("Downloading %1").replace("%1", target))

    @Slot(str, object)
    def _on_downloads_finished(self, target: str, result: Any) -> None:
        self.status.showMessage(self.tr("Downloaded %1").replace("%1", target), 8000)
        if target == self._first_run_download:
            self._first_run_download = ""
            info = self.downloads.downloaded().get(target)
            self.first_run.show_message("")
            self.set_model_folder(str(info["use_path"]) if info else str(result.path))

    @Slot(str, str, str)
    def _on_downloads_failed(self, target: str, message: str, hint: str) -> None:
        self.status.showMessage(
            self.tr("Download of %1 failed: %2").replace("%1", target).replace("%2", message)
        )
        dialog_shown = self.models_dialog is not None and self.models_dialog.isVisible()
        if target == self._first_run_download:
            self._first_run_download = ""
            if not self.first_run_visible():
                self.first_run.show_message("")
            if self.first_run_visible() or not dialog_shown:
                self.report_error(self.tr("The download failed"), message, hint)
        elif not dialog_shown:  # the Models page says it itself when it is open
            self.report_error(self.tr("The download failed"), message, hint)

    @Slot(str)
    def _on_models_dialog_use_for_chat(self, path: str) -> None:
        self.set_model_folder(path)

    @Slot(str)
    def _on_models_dialog_use_for_knowledge(self, folder: str) -> None:
        new = self.settings.model_copy(deep=True)
        new.knowledge.embedding_model = folder
        self._on_settings_dialog_settings_changed(new)  # as if set in Settings (offers to re-index)
        self._save_settings()

    # ---- conversations -----------------------------------------------------------------
    @property
    def conversation_id(self) -> int | None:
        return self._conversation_id

    @Slot()
    def new_chat(self) -> None:
        self._leave_current_answer()
        self._conversation_id = None
        self.sidebar.set_current(None)
        self.chat.clear()
        self.chat.set_title("")
        self.chat.set_options(self.chat.kb_names, self.settings.web.enabled)
        self.chat.input.setFocus()

    def open_conversation(self, conversation_id: int) -> None:
        self._leave_current_answer()
        store = self.ctx.store
        try:
            conversation = store.get_conversation(conversation_id)
            messages = store.messages(conversation_id)
        except Exception as exc:  # a deleted conversation, a broken database: say so, carry on
            log.warning("could not open conversation %s: %s", conversation_id, exc)
            self.status.showMessage(str(exc), 8000)
            self.sidebar.refresh()
            return
        self._conversation_id = conversation_id
        self.sidebar.set_current(conversation_id)
        self.chat.clear()
        self.chat.set_title(conversation.title)
        self.chat.set_options(conversation.kb_names, conversation.web)
        self._warm_knowledge()
        for m in messages:
            widget = self.chat.add_message("user" if m.role == "user" else "assistant", m.text, m.id)
            if m.role != "user":
                self._show_stored(widget, m, text=False)
        live = self._live_for(conversation_id)
        if live is not None:  # still being answered (or waiting for the model): show it going on
            self._attach(live, messages)
        self.chat.set_busy(live is not None)

    def _show_stored(self, widget: MessageWidget, m: Any, text: bool = True) -> None:
        """Show a saved answer (or the version of it just selected) with its sources, notices,
        status, speed and versions."""
        if text:
            widget.set_text(m.text, self.chat.view.palette_md)
        widget.set_sources(_source_views(m.sources))
        widget.set_notices(tuple(getattr(m, "notices", ())))
        widget.error_label.setVisible(False)
        widget.status.setText("")
        if m.status == "error":
            detail = m.stats.get("error", "") if m.stats else ""
            widget.set_error(self.tr("This answer failed."), str(detail or ""))
        elif m.status == "stopped":
            widget.status.setText(self.tr("stopped"))
        widget.set_stats(_stats_text(m.stats) if m.stats else "")
        widget.set_versions(getattr(m, "version", 1), getattr(m, "version_count", 1))

    def _leave_current_answer(self) -> None:
        """Switching chats mid-answer: the answer goes on in the background (the sidebar marks its
        conversation) and is saved there; only the widgets showing it go."""
        for live in self._live.values():
            live.widget = None
            live.question_widget = None
        self.chat.set_busy(False)

    def _live_for(self, conversation_id: int | None) -> _LiveAnswer | None:
        if conversation_id is None:
            return None
        return next((a for a in self._live.values() if a.conversation_id == conversation_id), None)

    def _shown_live(self) -> _LiveAnswer | None:
        """The answer being written in the conversation on screen, if any."""
        return next((a for a in self._live.values() if a.widget is not None), None)

    def _waiting_text(self) -> str:
        return self.tr("waiting: another chat is being answered…")

    def _attach(self, live: _LiveAnswer, messages: list[Any]) -> None:
        """Show answer ``live`` in the conversation just drawn from the store: its text so far
        streams on in the widget of its saved row, or, before the worker saved anything (it
        waits behind another answer), as the question and a waiting answer at the end."""
        view = self.chat.view
        streaming = live.message_id
        if streaming is None:  # the worker may have saved the row before its signal arrived
            streaming = next((m.id for m in messages if m.status == "streaming"), None)
        widget = next((w for w in view.messages if streaming is not None and w.message_id == streaming), None)
        if widget is not None:
            widget.begin_stream(view.palette_md)
            widget.set_stats("")
            if live.meta is not None:
                widget.set_sources(_source_views(live.meta.sources))
                widget.set_notices(live.meta.notices)
            if live.parts:
                widget.feed("".join(live.parts))
            live.widget = widget
            return
        if live.kind == "regenerate":
            target = next((w for w in view.messages if w.message_id == live.target_id), None)
            if target is not None:
                self.chat.remove_from(target)
        elif live.kind == "edit":
            target = next((w for w in view.messages if w.message_id == live.target_id), None)
            if target is not None and (target.text != live.question or target is not view.messages[-1]):
                self.chat.remove_from(target)
                target = None
            live.question_widget = target or self.chat.add_message("user", live.question, live.target_id)
        else:
            last = view.messages[-1] if view.messages else None
            if last is not None and last.role == "user" and last.text == live.question:
                live.question_widget = last  # the worker already saved the question
            else:
                live.question_widget = self.chat.add_message("user", live.question)
        widget = self.chat.add_message("assistant")
        widget.begin_stream(view.palette_md)
        if self.inference.is_waiting(live.request_id):
            widget.status.setText(self._waiting_text())
        live.widget = widget

    def _update_answering(self) -> None:
        """Mark the conversations being answered (or waiting) in the sidebar."""
        states = {
            a.conversation_id: "waiting" if self.inference.is_waiting(a.request_id) else "answering"
            for a in self._live.values()
            if a.conversation_id is not None
        }
        self.sidebar.set_answering(states)

    @Slot(object)
    def _on_sidebar_conversation_selected(self, conversation_id: int | None) -> None:
        if conversation_id is None:
            self.new_chat()
        else:
            self.open_conversation(conversation_id)

    @Slot(object)
    def _on_sidebar_conversation_deleted(self, conversation_id: int) -> None:
        for rid, live in list(self._live.items()):
            if live.conversation_id == conversation_id:  # nothing left to write the answer into
                self.inference.forget(rid)
                del self._live[rid]
        self._update_answering()
        if conversation_id == self._conversation_id:
            self.new_chat()

    @Slot(object, str)
    def _on_sidebar_conversation_renamed(self, conversation_id: int, title: str) -> None:
        if conversation_id == self._conversation_id:
            self.chat.set_title(title)

    @Slot()
    def _on_chat_options_changed(self) -> None:
        if self._conversation_id is not None:
            try:
                self.ctx.store.update_options(
                    self._conversation_id, self.chat.kb_names, self.chat.web_enabled
                )
            except Exception as exc:
                log.warning("could not save chat options: %s", exc)
        self._warm_knowledge()

    def _warm_knowledge(self) -> None:
        """This chat asks a knowledge base: load the embedding model now, in the background, not when
        the first question comes (it waited ~5 s for the imports and the model before retrieval)."""
        warm_up = getattr(self.ctx.knowledge, "warm_up", None)
        if self.chat.kb_names and warm_up is not None:
            try:
                warm_up()
            except Exception as exc:  # noqa: BLE001 - an optimisation: the question reports errors
                log.info("could not warm the embedding model: %s", exc)

    @Slot(object)
    def _on_knowledge_bases_changed(self, bases: Any) -> None:
        self.chat.set_knowledge_bases([getattr(b, "name", str(b)) for b in bases])
        self._warm_knowledge()  # an open conversation's saved choice is known only now

    # ---- asking ------------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Ask ``text`` in the open conversation (or a new one)."""
        if self._shown_live() is not None:
            return  # one answer at a time per conversation (the pane's Send is off meanwhile)
        question = self.chat.add_message("user", text)
        self._start_answer("ask", text, question_widget=question)

    def _start_answer(
        self,
        kind: str,
        question: str,
        message_id: int | None = None,
        question_widget: MessageWidget | None = None,
        target_id: int | None = None,
    ) -> None:
        answer = self.chat.add_message("assistant")
        answer.begin_stream(self.chat.view.palette_md)
        if self.inference.model_info is None and not self.inference.is_loading:
            answer.end_stream()
            answer.set_error(
                self.tr("No model is loaded."),
                self.tr("Choose a model folder (File → Choose model folder…) or check Settings → Model."),
            )
            return
        waiting = self.inference.is_busy  # the model writes one answer at a time: this one queues
        created_early = waiting and self._conversation_id is None
        if created_early:
            # a new chat that waits: save it now, so the sidebar lists it while it waits
            try:
                self._conversation_id = self.ctx.store.create_conversation(
                    question, self.chat.kb_names, self.chat.web_enabled
                )
                self.sidebar.set_current(self._conversation_id)
                self.chat.set_title(self.ctx.store.get_conversation(self._conversation_id).title)
            except Exception as exc:
                log.warning("could not create the conversation: %s", exc)
        if self.inference.is_loading:
            answer.status.setText(self.tr("waiting for the model to load…"))
        elif waiting:
            answer.status.setText(self._waiting_text())
        self.chat.set_busy(True)
        job = self.inference.ask(
            question,
            self.settings,
            conversation_id=self._conversation_id,
            kb_names=self.chat.kb_names,
            web=self.chat.web_enabled,
            kind=kind,  # type: ignore[arg-type]
            message_id=message_id,
        )
        self._live[job.request_id] = _LiveAnswer(
            job.request_id,
            kind,
            question,
            self._conversation_id,
            target_id,
            answer,
            question_widget,
            created_early=created_early,
        )
        self._update_answering()

    @Slot(str)
    def _on_chat_send_requested(self, text: str) -> None:
        self.send(text)

    @Slot(object, str)
    def _on_chat_edit_submitted(self, widget: MessageWidget, text: str) -> None:
        if self._shown_live() is not None:
            return
        message_id = widget.message_id
        self.chat.remove_from(widget)
        question = self.chat.add_message("user", text, message_id)
        self._start_answer("edit", text, message_id, question_widget=question, target_id=message_id)

    @Slot(object)
    def _on_chat_regenerate_requested(self, widget: MessageWidget) -> None:
        if self._shown_live() is not None or self._conversation_id is None:
            return
        target = widget.message_id
        self.chat.remove_from(widget)
        self._start_answer("regenerate", "", target_id=target)

    @Slot(object, int)
    def _on_chat_version_requested(self, widget: MessageWidget, version: int) -> None:
        """‹ / › under an answer: show another version; the next question's context uses it."""
        if widget.message_id is None or self._shown_live() is not None:
            return
        try:
            message = self.ctx.store.select_version(widget.message_id, version)
        except Exception as exc:
            self.status.showMessage(str(getattr(exc, "message", exc)), 8000)
            return
        self._show_stored(widget, message)
        self.chat.view.update_actions(False)

    @Slot()
    def _on_chat_stop_requested(self) -> None:
        live = self._shown_live()
        if live is not None:  # sets the job's threading.Event right here, on the GUI thread
            self.inference.stop(live.request_id)

    @Slot(int)
    def _on_inference_answer_began(self, rid: int) -> None:
        live = self._live.get(rid)
        if live is not None and live.widget is not None and live.widget.body.is_streaming:
            live.widget.status.setText(self.tr("writing…"))
        self._update_answering()

    @Slot(int, object)
    def _on_inference_answer_started(self, rid: int, meta: AnswerMeta) -> None:
        live = self._live.get(rid)
        if live is None:
            return
        live.meta = meta
        live.message_id = meta.message_id
        if meta.conversation_id is not None:
            live.conversation_id = meta.conversation_id
        self._update_answering()
        answer = live.widget
        if answer is None:  # answered in the background
            self.sidebar.refresh()
            return
        answer.status.setText(self.tr("writing…"))
        answer.message_id = meta.message_id
        if live.question_widget is not None and meta.question_message_id is not None:
            live.question_widget.message_id = meta.question_message_id
        answer.set_sources(_source_views(meta.sources))
        answer.set_notices(meta.notices)
        if live.kind == "regenerate" and meta.message_id:
            self._show_versions(answer, meta.message_id)
            answer.enable_versions(False)
        if meta.conversation_id is not None and meta.conversation_id != self._conversation_id:
            self._conversation_id = meta.conversation_id
            self.sidebar.set_current(meta.conversation_id)
            try:
                self.chat.set_title(self.ctx.store.get_conversation(meta.conversation_id).title)
            except Exception:
                pass

    def _show_versions(self, widget: MessageWidget, message_id: int) -> None:
        try:
            m = self.ctx.store.get_message(message_id)
        except Exception:
            return
        widget.set_versions(m.version, m.version_count)

    @Slot(int, str)
    def _on_inference_text_arrived(self, rid: int, text: str) -> None:
        live = self._live.get(rid)
        if live is None:
            return
        live.parts.append(text)  # kept to show it again when the user comes back to this chat
        if live.widget is not None:
            live.widget.feed(text)

    @Slot(int, object)
    def _on_inference_answer_finished(self, rid: int, result: AnswerResult) -> None:
        live = self._live.pop(rid, None)
        self._update_answering()
        if live is None:
            return
        stats = result.stats
        answer = live.widget
        if answer is None:  # finished in the background: saved by the service, unmark its chat
            if stats is not None:
                self.status.show_stats(stats)
            self.sidebar.refresh()
            return
        self.chat.set_busy(False)
        answer.end_stream()
        if result.message_id is not None:
            answer.message_id = result.message_id
        if result.error:
            answer.set_error(result.error, result.hint)
        elif stats is not None and stats.finish_reason == "cancelled":
            answer.status.setText(self.tr("stopped"))
        elif stats is not None and stats.finish_reason == "length":
            answer.status.setText(self.tr("cut off at the token limit"))
        if stats is not None:
            answer.set_stats(_stats_text(stats.to_dict()))
            self.status.show_stats(stats)
        if live.kind == "regenerate" and answer.message_id is not None and not result.error:
            try:
                saved = self.ctx.store.get_message(answer.message_id)
            except Exception:
                saved = None
            if saved is not None and saved.status != "streaming" and not answer.text.strip():
                self._show_stored(answer, saved)  # stopped before a word: the earlier version is back
            elif saved is not None:
                answer.set_versions(saved.version, saved.version_count)
        if result.conversation_id is not None and self._conversation_id is None:
            self._conversation_id = result.conversation_id
        self.sidebar.set_current(self._conversation_id)
        self.chat.view.update_actions(False)

    @Slot(object)
    def _on_chat_source_activated(self, source: SourceView) -> None:
        """A knowledge source opens in the in-app viewer at its page; a web source in the browser."""
        if source.kind == "web" and source.target and QDesktopServices.openUrl(QUrl(source.target)):
            return
        self.source_viewer().show_source(source)

    def source_viewer(self) -> Any:
        """The one source viewer window, made on first use."""
        if self._source_viewer is None:
            from bubble_desktop.ui.source_viewer import SourceViewer

            self._source_viewer = SourceViewer(self)
        return self._source_viewer

    # ---- settings ----------------------------------------------------------------------
    @Slot()
    def open_settings(self) -> None:
        try:
            from bubble_desktop.ui.settings_dialog import SettingsDialog
        except ImportError:
            return
        dialog = SettingsDialog(self.settings, self.ctx.paths, self)
        dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.settings_changed.connect(self._on_settings_dialog_settings_changed)
        dialog.open()

    @Slot(object)
    def _on_settings_dialog_settings_changed(self, new: Settings) -> None:
        old = self.settings
        self.settings = new
        self.ctx.settings = new
        if new.appearance != old.appearance:
            try:
                from PySide6.QtWidgets import QApplication

                from bubble_desktop.ui.theme import apply_theme

                app = QApplication.instance()
                if isinstance(app, QApplication):
                    apply_theme(app, new.appearance.theme, new.appearance.font_size)
            except ImportError:
                pass
        if new.knowledge != old.knowledge and self.ctx.knowledge is not None:
            try:
                self.ctx.knowledge.update_settings(new.knowledge)
            except Exception as exc:
                self.status.showMessage(str(exc), 8000)
        if new.model != old.model:
            self._show_chat_or_first_run()
            self.load_configured_model()
        if new.api != old.api:
            self.api.apply(new, self.inference.loaded_model)

    @Slot(str, str)
    def _on_api_state_changed(self, address: str, error: str) -> None:
        self.status.show_api(address)
        if error:
            self.status.showMessage(self.tr("API server: %1").replace("%1", error), 15000)

    def _save_settings(self) -> None:
        from bubble_desktop.core.settings import save_settings

        try:
            save_settings(self.settings, self.ctx.paths.settings_file)
        except OSError as exc:
            self.status.showMessage(self.tr("Settings could not be saved: %1").replace("%1", str(exc)), 8000)

    # ---- misc --------------------------------------------------------------------------
    @Slot()
    def _on_open_data_triggered(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ctx.paths.data_dir)))

    @Slot()
    def _on_about_triggered(self) -> None:
        QMessageBox.about(
            self,
            self.tr("About O.Bubble"),
            self.tr("O.Bubble %1\nA private chatbot that runs on your own computer.").replace(
                "%1", bubble_desktop.__version__
            ),
        )

    @Slot()
    def bring_to_front(self) -> None:
        """A second launch asked for this window."""
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802
        if event.key() == QtCore.Qt.Key.Key_Escape and self._built and self._shown_live() is not None:
            self._on_chat_stop_requested()
            return
        super().keyPressEvent(event)

    # ---- shutdown ----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel everything, stop every thread, close the stores. Safe to call twice."""
        if self._closing:
            return
        try:
            self.save_window_state()
        except Exception:  # a read-only config folder must not stop the shutdown
            log.exception("the window state could not be saved")
        self._closing = True
        if not self._built:
            return
        self.inference.forget_current()
        if self._source_viewer is not None:
            self._source_viewer.shutdown()
        self.api.shutdown()
        self.downloads.shutdown()
        if self.training_dialog is not None:
            self.training_dialog.shutdown()
        if self._gguf_task is not None:
            self._gguf_task.wait(1000)
        shutdown_tab = getattr(self.knowledge_tab, "shutdown", None)
        if callable(shutdown_tab):
            try:
                shutdown_tab()
            except Exception:
                log.exception("closing the knowledge tab failed")
        self.inference.shutdown(1500)
        self._drop_unused_conversations()

    def _drop_unused_conversations(self) -> None:
        """A new chat saved early because its question waited for another answer, and quit before
        its turn: nothing was said in it, so it goes (instead of an empty chat in the sidebar)."""
        for live in self._live.values():
            if live.created_early and live.conversation_id is not None:
                try:
                    if self.ctx.store.get_conversation(live.conversation_id).message_count == 0:
                        self.ctx.store.delete_conversation(live.conversation_id)
                except Exception:
                    log.exception("could not drop the unused conversation %s", live.conversation_id)

    def showEvent(self, event: Any) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown_once:  # the window manager's frame is known only now
            self._shown_once = True
            self.clamp_to_screen()

    def running_work(self) -> list[str]:
        """What quitting now would stop, in the user's words ([] when nothing runs)."""
        work = []
        if self._built and self._live:
            work.append(self.tr("An answer is still being written; what it has so far is saved."))
        controller = getattr(self.knowledge_tab, "controller", None)
        if getattr(controller, "busy", False):
            work.append(self.tr("Documents are being indexed; what is indexed so far is kept."))
        if self._built and self.downloads.jobs:
            work.append(self.tr("A model is downloading; it resumes where it stopped."))
        if self.training_dialog is not None and self.training_dialog.is_training:
            work.append(self.tr("A model is training; it can resume from its last checkpoint."))
        return work

    def confirm_quit(self) -> bool:
        """Ask before quitting while something runs; True when the app may quit."""
        work = self.running_work()
        if not work:
            return True
        choice = ask(
            self,
            title=APP_NAME,
            text=self.tr("Quit %1 now?").replace("%1", APP_NAME),
            informative="\n".join(f"• {w}" for w in work),
            choices=[("quit", self.tr("Quit"), QMessageBox.ButtonRole.DestructiveRole)],
            icon=QMessageBox.Icon.Warning,
            name="quitWhileRunningBox",
            default="quit",
        )
        return choice == "quit"

    @Slot()
    def quit_asking(self) -> None:
        """File → Quit: ask first when something runs, then close."""
        if self.confirm_quit():
            self._quit_confirmed = True
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        # the window manager's close button (a spontaneous event) asks as File → Quit does; a close()
        # from code (tests, BUBBLE_AUTOQUIT_MS, the smoke test) does not
        asked = self._quit_confirmed or self._closing
        if event.spontaneous() and not asked and not self.confirm_quit():
            event.ignore()
            return
        self.shutdown()
        super().closeEvent(event)


def _source_views(sources: Any) -> tuple[SourceView, ...]:
    from bubble_desktop.ui.source_text import source_view

    return tuple(source_view(i, s) for i, s in enumerate(sources, start=1))


class StartingView(QWidget):
    """What the window shows between appearing and being built: the themed background and a muted
    "Starting O.Bubble…"; ``painted`` fires after its first paint, when app.main builds the parts."""

    painted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("startingView")
        self._announced = False
        # centred by stretches, not setAlignment: no Qt.* enum before the window shows (ui/theme.py)
        row = QHBoxLayout()
        row.addStretch(1)
        label = QLabel(self.tr("Starting %1…").replace("%1", APP_NAME))
        label.setObjectName("startingLabel")
        label.setProperty("role", "hint")  # the theme's muted text colour
        row.addWidget(label)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self._announced:
            self._announced = True
            self.painted.emit()


def _stats_text(stats: dict[str, Any]) -> str:
    def tr(text: str) -> str:
        return QCoreApplication.translate("MainWindow", text)

    parts = []
    tokens = stats.get("completion_tokens")
    if tokens:
        parts.append(tr("%1 tokens").replace("%1", str(tokens)))
    speed = stats.get("tokens_per_s")
    if speed:
        parts.append(tr("%1 tokens/s").replace("%1", f"{float(speed):.1f}"))
    ttft = stats.get("ttft_s")
    if ttft:
        parts.append(tr("first token after %1 s").replace("%1", f"{float(ttft):.2f}"))
    return " · ".join(parts)
