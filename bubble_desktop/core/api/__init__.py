"""OpenAI-compatible local API server over the loaded model and the knowledge bases.

``owner`` (one model, one worker, a bounded FIFO queue), ``protocol`` (the OpenAI wire format),
``app`` (the Starlette app, imported lazily) and ``server`` (uvicorn on a thread). Web framework
imports happen only when a server is created, never at core import time.
"""
