"""Errors meant for the user: what happened, and what to do about it."""

from __future__ import annotations

from bubble_desktop.core.i18n import localize


class UserFacingError(Exception):
    """An error whose message is shown to the user as is, with a hint on what to try.

    Core code raises these; workers catch them at the thread boundary and the UI or CLI shows
    ``message`` and ``hint``. Anything else that escapes is a bug and goes to the crash handler.
    Both are in the user's language when the UI installed a translator (``core.i18n``); the
    English text stays in ``english_message``/``english_hint`` (``to_dict``, for programs).
    """

    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.english_message = message
        self.english_hint = hint if hint is not None else self.default_hint
        self.message = localize(message)
        self.hint = localize(self.english_hint)
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"error": type(self).__name__, "message": self.english_message, "hint": self.english_hint}


class SettingsError(UserFacingError):
    default_hint = "Check the value in Settings; the previous value was kept."


class ModelError(UserFacingError):
    """Anything about finding, loading or running a chat model."""


class ModelNotFoundError(ModelError):
    default_hint = "Choose a folder that contains config.json and the model weights, or import a GGUF file."


class UnsupportedModelError(ModelError):
    default_hint = "Pick a causal or seq2seq chat model that transformers supports."


class OutOfMemoryError(ModelError):
    default_hint = (
        "Close other programs, lower max new tokens, use a "
        "smaller or quantized model, or switch the device to CPU."
    )


class RemoteCodeConsentRequired(ModelError):
    default_hint = (
        "This model ships its own Python code. Allow it in the "
        "dialog, or pass --trust-remote-code on the command line."
    )


class GenerationError(ModelError):
    default_hint = "Try again; if it keeps failing, reload the model or lower max new tokens."


class KnowledgeBaseError(UserFacingError):
    """Anything about knowledge bases, documents and the vector store."""


class StoreLockedError(KnowledgeBaseError):
    default_hint = (
        "Another Bubble is using this knowledge base. Close it, or wait for it to finish, then try again."
    )


class BackendMismatchError(KnowledgeBaseError):
    """A knowledge base lives in another vector database than the one configured now."""


class EmbeddingMismatchError(KnowledgeBaseError):
    default_hint = (
        "Re-index the knowledge base with the current embedding "
        "model, or switch back to the model it was built with."
    )


class ParseError(KnowledgeBaseError):
    """One file could not be turned into text; the rest of the batch carries on."""


class WebSearchError(UserFacingError):
    default_hint = (
        "The answer continues without web results. Check the "
        "network or proxy setting, or turn web search off."
    )


class ConversationError(UserFacingError):
    pass


class AlreadyRunningError(UserFacingError):
    default_hint = "Bubble is already running with this data folder; switch to that window."


class TrainingError(UserFacingError):
    """Anything about fine-tuning jobs (LoRA): settings, memory, checkpoints."""


class TrainingDataError(TrainingError):
    default_hint = "Fix the rows named above (or remove the file) and try again."
