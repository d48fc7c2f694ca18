"""Chat models: the protocol, the transformers backend, ChatGLM, GGUF import, LoRA, endpoints."""
