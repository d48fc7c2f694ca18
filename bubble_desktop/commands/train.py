"""bubble-cli train: LoRA fine-tuning (lora), a data preview (preview), merging an adapter (merge).

``train lora`` runs the job in a child process (core/train/lora.py) and shows its events: a progress
line on a terminal, one JSON object per line with ``--json``. Ctrl-C asks the job to save a
checkpoint and stop (``--resume`` continues from it); a second Ctrl-C ends it at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="fine-tune a model on your own data (LoRA)",
        description="Fine-tune a transformers model folder on your Q&A data with LoRA.",
    )
    tsub = p.add_subparsers(dest="train_command", metavar="WHAT")

    lora = tsub.add_parser(
        "lora",
        help="train a LoRA adapter",
        description="Train a LoRA adapter; it is saved under the models folder as lora/NAME and can be "
        "used with bubble-cli ask --lora. Options left out are picked for this machine and the data.",
    )
    lora.add_argument("--model", metavar="PATH", help="model folder (or the name of an imported model)")
    lora.add_argument(
        "--data",
        nargs="+",
        metavar="FILE",
        default=[],
        help="training files: title##answer .txt, .jsonl/.json, .csv (folders: their files)",
    )
    lora.add_argument("--out", required=True, metavar="NAME", help="adapter name (models/lora/NAME)")
    lora.add_argument("--epochs", type=float, metavar="N")
    lora.add_argument("--lr", type=float, metavar="F", help="learning rate (default 2e-4)")
    lora.add_argument("--rank", type=int, metavar="N", help="LoRA rank (default 8, 16 on a large GPU)")
    lora.add_argument("--dropout", type=float, metavar="F", help="LoRA dropout (default 0.05)")
    lora.add_argument("--alpha", type=int, metavar="N", help="LoRA alpha (default 2 × rank)")
    lora.add_argument("--max-len", type=int, metavar="N", help="tokens per example (longer ones are cut)")
    lora.add_argument("--batch-size", type=int, metavar="N")
    lora.add_argument("--grad-accum", type=int, metavar="N", help="micro-batches per optimizer step")
    lora.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    lora.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps")
    lora.add_argument("--eval-every", type=int, metavar="N", help="validation loss every N steps")
    lora.add_argument("--warmup-steps", type=int, metavar="N")
    lora.add_argument("--seed", type=int, metavar="N")
    lora.add_argument(
        "--system",
        metavar="TEXT",
        help="system prompt for examples without one (default: the chat's saved system prompt, "
        "so the adapter is trained on the prompt it is later asked with)",
    )
    lora.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    lora.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"])
    lora.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"])
    lora.add_argument(
        "--quantize",
        dest="quantization",
        choices=["auto", "4bit", "none"],
        help="QLoRA: base weights in 4 bits (bitsandbytes, on a CUDA GPU or the CPU; "
        "auto: when full precision would not fit)",
    )
    lora.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores)")
    lora.add_argument(
        "--memory-limit-mb", type=int, metavar="MB", help="refuse when the estimate exceeds this"
    )
    lora.add_argument(
        "--skip-bad-rows", action="store_true", help="train on the readable rows, skip the rest"
    )
    lora.add_argument(
        "--trust-remote-code", action="store_true", help="allow models with their own code (ChatGLM)"
    )
    lora.add_argument("--resume", action="store_true", help="continue the unfinished training NAME")
    lora.add_argument(
        "--restart", action="store_true", help="discard the unfinished training NAME and start over"
    )
    lora.add_argument("--json", action="store_true", help="one JSON object per event on stdout")
    lora.set_defaults(func=run_lora)

    pv = tsub.add_parser("preview", help="check training data: counts, token lengths, problems")
    pv.add_argument(
        "--model", required=True, metavar="PATH", help="model folder (its tokenizer and chat template)"
    )
    pv.add_argument("--data", nargs="+", required=True, metavar="FILE")
    pv.add_argument("--max-len", type=int, default=512, metavar="N")
    pv.add_argument("--json", action="store_true")
    pv.set_defaults(func=run_preview)

    merge = tsub.add_parser("merge", help="merge a LoRA adapter into a copy of its base model")
    merge.add_argument("--model", required=True, metavar="PATH", help="the base model folder")
    merge.add_argument("--lora", required=True, metavar="NAME|DIR", help="adapter name or folder")
    merge.add_argument("--out", required=True, metavar="DIR", help="new model folder")
    merge.set_defaults(func=run_merge)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


_OPTION_FIELDS = (
    "epochs",
    "dropout",
    "lr",
    "rank",
    "alpha",
    "max_len",
    "batch_size",
    "grad_accum",
    "max_steps",
    "save_every",
    "eval_every",
    "warmup_steps",
    "seed",
    "device",
    "dtype",
    "gradient_checkpointing",
    "quantization",
    "threads",
    "memory_limit_mb",
)


def _settings(args: argparse.Namespace) -> Any:
    from bubble_desktop.core.errors import TrainingError
    from bubble_desktop.core.train.lora import LoraSettings, check_name

    name = check_name(args.out)
    if not args.resume and (not args.model or not args.data):
        raise TrainingError(
            "--model and --data are needed to start a training.",
            "Pass --resume to continue an unfinished one instead.",
        )
    s = LoraSettings(
        model=args.model or "",
        data=list(args.data),
        name=name,
        trust_remote_code=bool(args.trust_remote_code),
        skip_bad_rows=bool(args.skip_bad_rows),
    )
    if args.system is not None:
        s.system_prompt = args.system
    elif not args.resume:
        from bubble_desktop.commands.ask import load_user_settings

        s.system_prompt = load_user_settings().sampling.system_prompt
    for f in _OPTION_FIELDS:
        value = getattr(args, f, None)
        if value is not None:
            setattr(s, f, value)
    return s


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Printer:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.val: float | None = None
        self.last_line = 0.0
        self.open_line = False

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            return
        kind = ev.get("event")
        if kind == "eval":
            self.val = float(ev["val_loss"])
        elif kind == "step":
            self._progress(ev)
        elif kind == "status":
            self._line(str(ev["message"]))
        elif kind == "preview":
            warn = [p for p in ev.get("problems", []) if p.get("level") == "warning"]
            self._line(
                f"data: {ev['usable']} examples, {ev['tokens_mean']} tokens on average "
                f"(max {ev['tokens_max']}), {len(warn)} warning(s)"
            )
            for p in warn[:5]:
                self._line(f"  warning: {p['file']}:{p['row']}: {p['message']}")
        elif kind == "estimate":
            self._line(
                f"memory: about {ev['need_mb']:,} MB needed, {ev['available_mb']:,} MB free on {ev['device']}"
            )
        elif kind == "start":
            resumed = f", resumed at step {ev['resumed_from']}" if ev.get("resumed_from") else ""
            self._line(
                f"training {ev['total_steps']} steps on {ev['train_examples']} examples "
                f"({ev['val_examples']} for validation) on {ev['device']}{resumed}"
            )
        elif kind == "checkpoint" and not self.tty:
            self._line(f"checkpoint at step {ev['step']}")
        elif kind == "cancelled":
            self._line(f"stopped at step {ev['step']}; continue with --resume")
        elif kind == "done":
            card = ev.get("card", {})
            self._line(
                f"done: loss {card.get('first_loss')} → {card.get('final_loss')}, "
                f"validation {card.get('final_val_loss')}"
            )
            sys.stdout.write(str(ev["adapter"]) + "\n")
            sys.stdout.flush()

    def _progress(self, ev: dict[str, Any]) -> None:
        step, total = int(ev["step"]), int(ev["total_steps"])
        width = 24
        filled = int(width * step / max(1, total))
        val = f" val {self.val:.3f}" if self.val is not None else ""
        text = (
            f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total} loss {ev['loss']:.3f}{val} "
            f"{ev['tokens_per_s']:,.0f} tok/s ETA {_fmt_eta(float(ev['eta_s']))}"
        )
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100))
            sys.stderr.flush()
            self.open_line = True
        elif time.monotonic() - self.last_line >= 5 or step == total:
            self.last_line = time.monotonic()
            print(text, file=sys.stderr)

    def _line(self, text: str) -> None:
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False
        print(text, file=sys.stderr)


def run_lora(args: argparse.Namespace) -> int:
    from bubble_desktop.core.errors import TrainingError
    from bubble_desktop.core.train.lora import TrainingJob

    settings = _settings(args)
    job = TrainingJob(settings, resume=bool(args.resume), restart=bool(args.restart))
    show = _Printer(bool(args.json))
    job.start()
    interrupts = 0
    try:
        while job.final is None:
            try:
                for ev in job.poll(0.5):
                    show(ev)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:
                    job.cancel()
                    show._line("stopping after this step (a checkpoint is saved; Ctrl-C again ends it now)")
                else:
                    job.kill()
                    show._line("ended; --resume continues from the last periodic checkpoint")
                    return 130
    finally:
        job.close()
    final = job.final
    if final["event"] == "error":
        if args.json:
            return 2
        raise TrainingError(str(final.get("message")), str(final.get("hint") or ""))
    return 130 if final["event"] == "cancelled" else 0


def run_preview(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from bubble_desktop.core.llm.locate import resolve_model_path
    from bubble_desktop.core.train.data import load_files, preview

    folder = resolve_model_path(args.model)
    ds = load_files(args.data)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    pv = preview(ds.examples, tok, args.max_len, ds.problems)
    if args.json:
        print(json.dumps(pv.to_dict(), ensure_ascii=False))
        return 0 if not ds.errors else 2
    print(
        f"{pv.examples} examples ({pv.usable} usable), tokens min {pv.tokens_min} / mean {pv.tokens_mean} / "
        f"p95 {pv.tokens_p95} / max {pv.tokens_max}; {pv.empty_answers} empty answers, {pv.duplicates} "
        f"duplicates, {pv.over_long} longer than {pv.max_len}"
    )
    for p in pv.problems:
        print(f"{p.level}: {p}")
    return 0 if not ds.errors else 2


def run_merge(args: argparse.Namespace) -> int:
    from bubble_desktop.core.train.lora import merge_adapter

    print(merge_adapter(args.model, args.lora, args.out))
    return 0
