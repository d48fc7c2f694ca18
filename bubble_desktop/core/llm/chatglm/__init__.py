"""ChatGLM-6B / -int4 / ChatGLM2-6B / ChatGLM3-6B: their own remote code, made to run on the pinned transformers."""

from __future__ import annotations
