"""bubble-cli models: import GGUF files, list imported models, show recommended models."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="import GGUF files, list models", description="Manage local chat models.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    imp = msub.add_parser("import-gguf", help="convert a GGUF file once into a model folder and print its path")
    imp.add_argument("file", help="the .gguf file")
    imp.add_argument("--name", help="folder name under the models dir (default: from the file name)")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    imp.set_defaults(func=run_import)
    add = msub.add_parser("add", help="register a GGUF file by path (runs directly through llama.cpp)")
    add.add_argument("file", help="the .gguf file")
    add.add_argument("--name", help="the name to use it by (default: from the file name)")
    add.add_argument("--copy", action="store_true", help="copy the file into the models dir")
    add.set_defaults(func=run_add)
    lst = msub.add_parser("list", help="list imported models")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_list)
    rec = msub.add_parser("recommended", help="models that suit this kind of app, with the memory they need")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=run_recommended)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_import(args: argparse.Namespace) -> int:
    from bubble_desktop.core.llm.gguf_import import import_gguf

    def progress(fraction: float, what: str) -> None:
        print(f"[{fraction:4.0%}] {what}", file=sys.stderr, flush=True)

    folder = import_gguf(args.file, args.name, overwrite=args.overwrite, progress=progress)
    print(folder)
    return 0


def run_add(args: argparse.Namespace) -> int:
    from bubble_desktop.core.llm.gguf_models import add_gguf

    print(add_gguf(args.file, args.name, copy=args.copy))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from bubble_desktop.core.llm.gguf_import import list_imported
    from bubble_desktop.core.llm.gguf_models import registered

    rows = [(f.name, str(f)) for f in list_imported()] + sorted(registered().items())
    if args.json:
        print(json.dumps([{"name": n, "path": p} for n, p in rows]))
    else:
        for n, p in rows:
            print(f"{n}\t{p}")
    return 0


def run_recommended(args: argparse.Namespace) -> int:
    from bubble_desktop.core.llm.registry import RECOMMENDED

    if args.json:
        print(json.dumps([m.to_dict() for m in RECOMMENDED], ensure_ascii=False))
    else:
        for m in RECOMMENDED:
            print(f"{m.name:28} {m.memory:28} {m.hub_id}")
    return 0
