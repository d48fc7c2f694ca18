"""ChatGLM-6B / -int4 / ChatGLM2-6B / ChatGLM3-6B: their own remote code, run on the pinned transformers.

``load_remote_code_model`` is what the model loader calls for a folder whose config.json has an
``auto_map``; nothing heavy is imported until it runs.
"""

from __future__ import annotations

from bubble_desktop.core.llm.chatglm.model import (
    ChatGLMChatModel,
    CpmKernelsMissingError,
    GccMissingError,
    check_c_compiler,
    detect_variant,
    is_chatglm_folder,
    load_remote_code_model,
)

__all__ = [
    "ChatGLMChatModel",
    "CpmKernelsMissingError",
    "GccMissingError",
    "check_c_compiler",
    "detect_variant",
    "is_chatglm_folder",
    "load_remote_code_model",
]
