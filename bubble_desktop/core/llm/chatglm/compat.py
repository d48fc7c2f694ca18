"""Make ChatGLM's own model code (written for transformers 4.27–4.41) run on the transformers we pin.

THUDM's ChatGLM-6B (v1 and int4), ChatGLM2-6B and ChatGLM3-6B folders carry their own
``configuration_chatglm.py`` / ``tokenization_chatglm.py`` / ``modeling_chatglm.py``. Newer
transformers releases broke them one after another (see issue #6 for the table). Instead of editing
the user's files we patch at the point where transformers hands the remote classes out: every class
resolved through ``get_class_from_dynamic_module`` is wrapped in a small *compat subclass* that
overrides only what the running transformers needs. Subclassing (rather than writing attributes onto
the remote classes) matters because transformers 4.42–4.48 re-executes the remote module on every
load, which would silently drop patches applied once to the old class objects; a subclass made at
each resolution always wraps the class actually in use, and the user's model folder is never touched.

Every patch checks first that it is needed and names the transformers change it answers.
Verified on transformers 5.23.0 (the project's pin) against THUDM's real files; on 4.33.3 (v1, v2)
and 4.41.2 (v3) every check answers "not needed" and the classes are handed out unchanged.
"""

from __future__ import annotations

import inspect
import logging
import sys
import weakref
from typing import Any

log = logging.getLogger(__name__)

#: the transformers releases this layer has been verified on (see tests/bench/chatglm_verify.py);
#: pyproject.toml pins transformers to the same minor release
TESTED_TRANSFORMERS = (5, 23)


def transformers_is_tested() -> bool:
    """True when the running transformers is the minor release the compat layer was verified on."""
    import transformers

    parts = transformers.__version__.split(".")
    try:
        return (int(parts[0]), int(parts[1])) == TESTED_TRANSFORMERS
    except (ValueError, IndexError):
        return False


_COMPAT_CACHE: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()
COMPAT_MARK = "__bubble_chatglm_compat__"


def _compat_subclass(base: type, namespace: dict[str, Any], extra_bases: tuple[type, ...] = ()) -> type:
    """A subclass of ``base`` named like it, living in its module (so save/auto_map code still finds it)."""
    if not namespace and not extra_bases:
        return base
    ns = dict(namespace)
    ns["__module__"] = base.__module__
    ns["__qualname__"] = base.__qualname__
    ns[COMPAT_MARK] = True
    return type(base.__name__, (base, *extra_bases), ns)


def _cached(base: type, build: Any) -> type:
    if getattr(base, COMPAT_MARK, False) and COMPAT_MARK in base.__dict__:
        return base  # already a compat class
    hit = _COMPAT_CACHE.get(base)
    if hit is None:
        hit = build(base)
        _COMPAT_CACHE[base] = hit
    return hit


# --------------------------------------------------------------------------- config


def compat_config_class(base: Any) -> type:
    return _cached(base, _build_config)


def _build_config(base: Any) -> type:
    ns: dict[str, Any] = {}

    from transformers import PretrainedConfig

    try:
        probe_needed = not hasattr(PretrainedConfig(), "max_length")
    except Exception:  # noqa: BLE001 — if the base cannot be probed, the defaults are only set where missing
        probe_needed = True
    if probe_needed:
        # transformers 5.0 removed the generation defaults (max_length=20, use_cache=True, ...) from
        # PretrainedConfig; ChatGLM's code reads config.use_cache and its stream_generate reads
        # max_length through the generation config built from the model config.
        orig_init = base.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            orig_init(self, *args, **kwargs)
            for name, default in (("use_cache", True), ("max_length", 20)):
                try:
                    present = name in self.__dict__ or hasattr(self, name)
                except Exception:  # noqa: BLE001
                    present = False
                if not present:
                    setattr(self, name, default)

        ns["__init__"] = __init__
    return _compat_subclass(base, ns)


# --------------------------------------------------------------------------- tokenizer


def compat_tokenizer_class(base: Any) -> type:
    return _cached(base, _build_tokenizer)


def _sp_attribute(base: Any) -> tuple[str, Any, int | None] | None:
    """Which attribute the tokenizer's __init__ stores its SentencePiece wrapper in, and the wrapper class."""
    module = sys.modules.get(base.__module__)
    sp_cls = getattr(module, "SPTokenizer", None)
    if sp_cls is None:
        return None
    try:
        src = inspect.getsource(base.__init__)
    except (OSError, TypeError):
        return None
    for attr in ("sp_tokenizer", "tokenizer"):
        if f"self.{attr} = SPTokenizer(" in src:
            default_images = None
            params = inspect.signature(base.__init__).parameters
            if (
                "num_image_tokens" in params
                and params["num_image_tokens"].default is not inspect.Parameter.empty
            ):
                default_images = params["num_image_tokens"].default
            return attr, sp_cls, default_images
    return None


def _init_order_broken(base: Any) -> bool:
    """True where the base __init__ runs before the SentencePiece object exists and reads the vocab.

    transformers 4.34 (PR #23909, added-tokens rework) made ``PreTrainedTokenizer.__init__`` call
    ``get_vocab()``/``vocab_size``; ChatGLM-6B/ChatGLM2-6B create ``self.sp_tokenizer``/``self.tokenizer``
    only after calling it ("object has no attribute 'sp_tokenizer'"; on 5.x the same surfaces as
    "'property' object cannot be interpreted as an integer").
    """
    try:
        src = inspect.getsource(base.__init__)
    except (OSError, TypeError):
        return False
    sp_at = min(
        (
            i
            for i in (src.find("self.sp_tokenizer = SPTokenizer("), src.find("self.tokenizer = SPTokenizer("))
            if i >= 0
        ),
        default=-1,
    )
    super_at = src.find("super().__init__(")
    if sp_at < 0 or super_at < 0 or sp_at < super_at:
        return False
    # the check is cheap and honest: does the running base __init__ touch the vocabulary?
    from transformers import PreTrainedTokenizer

    try:
        base_src = inspect.getsource(PreTrainedTokenizer.__init__)
    except (OSError, TypeError):
        return True
    return "_add_tokens" in base_src or "get_vocab" in base_src or "vocab_size" in base_src


def _build_tokenizer(base: Any) -> type:
    from transformers import PreTrainedTokenizerBase

    ns: dict[str, Any] = {}

    sp = _sp_attribute(base)
    if sp is not None and _init_order_broken(base):
        attr, sp_cls, default_images = sp
        orig_init = base.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            vocab_file = kwargs.get("vocab_file", args[0] if args else None)
            if vocab_file is not None and attr not in self.__dict__:
                if default_images is not None:
                    obj = sp_cls(vocab_file, num_image_tokens=kwargs.get("num_image_tokens", default_images))
                else:
                    obj = sp_cls(vocab_file)
                object.__setattr__(self, attr, obj)
            orig_init(self, *args, **kwargs)

        ns["__init__"] = __init__

    # THUDM's tokenizer_config.json files do not set clean_up_tokenization_spaces; transformers 4.33
    # defaulted it to True (" ." -> "."), 5.x to False (PR #31938 began the switch), which leaves a
    # space before punctuation in every answer. Restore the old default unless the folder sets it.
    init_before = ns.get("__init__", base.__init__)

    def __init__with_clean_up(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("clean_up_tokenization_spaces", True)
        init_before(self, *args, **kwargs)

    ns["__init__"] = __init__with_clean_up

    pad_params = inspect.signature(base._pad).parameters
    base_pad_params = inspect.signature(PreTrainedTokenizerBase._pad).parameters
    if "padding_side" in base_pad_params and "padding_side" not in pad_params:
        # transformers 4.45 (PR #32858) passes padding_side= to _pad(); ChatGLM's override predates it.
        # ChatGLM pads on the left only (its _pad asserts it), so the argument is dropped.
        orig_pad = base._pad

        def _pad(self: Any, *args: Any, padding_side: str | None = None, **kwargs: Any) -> Any:
            return orig_pad(self, *args, **kwargs)

        ns["_pad"] = _pad

    if not hasattr(base, "batch_encode_plus"):
        # transformers 5.0 removed batch_encode_plus/encode_plus (use __call__); ChatGLM3's
        # build_chat_input still calls batch_encode_plus([ids], is_split_into_words=True).
        def batch_encode_plus(self: Any, batch: Any, **kwargs: Any) -> Any:
            return self(batch, **kwargs)

        ns["batch_encode_plus"] = batch_encode_plus

    return _compat_subclass(base, ns)


# --------------------------------------------------------------------------- model


def compat_model_class(base: Any) -> type:
    return _cached(base, _build_model)


def _build_model(base: Any) -> type:
    from transformers import GenerationMixin, LogitsProcessorList

    ns: dict[str, Any] = {}
    extra: tuple[type, ...] = ()

    if not issubclass(base, GenerationMixin):
        # transformers 4.50 (PR #33203): PreTrainedModel no longer inherits GenerationMixin; ChatGLM's
        # stream_generate calls its helpers (_get_logits_processor, _get_stopping_criteria, ...).
        extra = (GenerationMixin,)

    warper = getattr(GenerationMixin, "_get_logits_warper", None)
    if warper is None:
        # transformers 4.45 (PR #33000) folded the warpers (temperature/top-k/top-p) into
        # _get_logits_processor when do_sample; applying them again here would warp twice.
        # With do_sample=False they never changed the argmax on 4.x either.
        def _get_logits_warper(self: Any, generation_config: Any, device: Any = None) -> Any:
            return LogitsProcessorList()

        ns["_get_logits_warper"] = _get_logits_warper
    elif (
        "device" in inspect.signature(warper).parameters
        and inspect.signature(warper).parameters["device"].default is inspect.Parameter.empty
    ):
        # transformers 4.42 added a required ``device`` argument (first error for ChatGLM3 on 4.42).
        def _get_logits_warper(self: Any, generation_config: Any, device: Any = None) -> Any:  # noqa: F811
            return warper(self, generation_config, device=device if device is not None else self.device)

        ns["_get_logits_warper"] = _get_logits_warper

    extract = getattr(GenerationMixin, "_extract_past_from_model_output", None)
    if extract is None or "standardize_cache_format" not in inspect.signature(extract).parameters:
        # transformers 4.42 dropped the ``standardize_cache_format`` argument and 4.47 removed the method;
        # ChatGLM's _update_model_kwargs_for_generation calls it to carry the KV cache to the next step
        # (without it every step would recompute the whole prompt).
        def _extract_past_from_model_output(
            self: Any, outputs: Any, standardize_cache_format: bool = False
        ) -> Any:
            return getattr(outputs, "past_key_values", None)

        ns["_extract_past_from_model_output"] = _extract_past_from_model_output

    if _reads_special_token_tensors(GenerationMixin):
        # transformers 4.43 (PR #31254) made the processors and stopping criteria read tensors
        # (generation_config._eos_token_tensor, ...) that generate() prepares; ChatGLM's own
        # stream_generate never calls _prepare_special_tokens.
        orig_lp = GenerationMixin._get_logits_processor
        orig_sc = GenerationMixin._get_stopping_criteria

        def _ensure_special(self: Any, generation_config: Any) -> None:
            if not hasattr(generation_config, "_eos_token_tensor"):
                self._prepare_special_tokens(generation_config, True, device=self.device)

        def _get_logits_processor(self: Any, generation_config: Any, *args: Any, **kwargs: Any) -> Any:
            _ensure_special(self, generation_config)
            kwargs.setdefault("device", self.device)
            return orig_lp(self, generation_config, *args, **kwargs)

        def _get_stopping_criteria(self: Any, generation_config: Any, *args: Any, **kwargs: Any) -> Any:
            _ensure_special(self, generation_config)
            return orig_sc(self, generation_config, *args, **kwargs)

        ns["_get_logits_processor"] = _get_logits_processor
        ns["_get_stopping_criteria"] = _get_stopping_criteria

    if _post_init_sets_tied_keys():
        orig_model_init = base.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            orig_model_init(self, *args, **kwargs)
            if not hasattr(self, "all_tied_weights_keys"):
                # transformers 5.0 loading reads all_tied_weights_keys, which post_init() sets;
                # ChatGLM's models never call post_init().
                self.post_init()

        ns["__init__"] = __init__
    return _compat_subclass(base, ns, extra)


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _reads_special_token_tensors(mixin: Any) -> bool:
    """True where the processors/criteria read tensors that only _prepare_special_tokens creates."""
    if getattr(mixin, "_prepare_special_tokens", None) is None:
        return False
    return any(
        "_eos_token_tensor" in _source(getattr(mixin, name, None))
        for name in ("_get_stopping_criteria", "_get_logits_processor")
    )


def _post_init_sets_tied_keys() -> bool:
    from transformers import PreTrainedModel

    return "all_tied_weights_keys" in _source(PreTrainedModel.post_init)


def retie_output_embeddings(model: Any) -> bool:
    """Tie the output layer to the input embeddings where the config asks for it and loading did not.

    transformers 4.x tied ``lm_head`` to ``word_embeddings`` for every model whose config keeps the
    default ``tie_word_embeddings=True`` (ChatGLM-6B v1/int4). 5.0 ties only the keys a class declares
    in ``_tied_weights_keys``, which ChatGLM's code predates, so the answers changed silently.
    Returns True when it re-tied.
    """
    config = getattr(model, "config", None)
    tie = getattr(config, "tie_word_embeddings", None)
    if tie is None:
        tie = True  # the 4.x PretrainedConfig default, which ChatGLM-6B's config relies on
    if not tie:
        return False
    try:
        out = model.get_output_embeddings()
        inp = model.get_input_embeddings()
    except Exception:  # noqa: BLE001 — a model without the accessors has nothing to tie
        return False
    if out is None or inp is None:
        return False
    ow, iw = getattr(out, "weight", None), getattr(inp, "weight", None)
    if ow is None or iw is None or ow is iw or tuple(ow.shape) != tuple(iw.shape) or ow.dtype != iw.dtype:
        return False
    out.weight = iw
    return True


def resolve_compat_classes(
    path: str, auto_map: dict[str, Any], tokenizer_ref: str | None
) -> tuple[Any, Any, Any]:
    """Resolve (config, tokenizer, model) classes for ``path`` through transformers and wrap them."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config_ref = auto_map.get("AutoConfig")
    model_ref = (
        auto_map.get("AutoModelForCausalLM")
        or auto_map.get("AutoModel")
        or auto_map.get("AutoModelForSeq2SeqLM")
    )
    if not (config_ref and model_ref and tokenizer_ref):
        raise LookupError("auto_map lacks AutoConfig / AutoModel / AutoTokenizer")
    cfg = get_class_from_dynamic_module(config_ref, path, local_files_only=True)
    tok = get_class_from_dynamic_module(tokenizer_ref, path, local_files_only=True)
    mdl = get_class_from_dynamic_module(model_ref, path, local_files_only=True)
    return compat_config_class(cfg), compat_tokenizer_class(tok), compat_model_class(mdl)
