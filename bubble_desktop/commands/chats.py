"""bubble-cli chats: list, show, search, export, import, rename and delete saved conversations."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bubble_desktop.core.chat.store import ConversationStore


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "chats", help="saved conversations", description="List, show and export saved conversations."
    )
    chats = p.add_subparsers(dest="chats_command", metavar="ACTION")

    ls = chats.add_parser("list", help="list conversations, newest first")
    ls.add_argument("--limit", type=int, metavar="N")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    show = chats.add_parser("show", help="print a conversation")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    search = chats.add_parser("search", help="full-text search of all messages")
    search.add_argument("text")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=run_search)

    export = chats.add_parser("export", help="export a conversation as Markdown or JSON")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["md", "json"], default="md")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    export.set_defaults(func=run_export)

    imp = chats.add_parser("import", help="import a conversation exported as JSON")
    imp.add_argument("file")
    imp.set_defaults(func=run_import)

    rename = chats.add_parser("rename", help="rename a conversation")
    rename.add_argument("id", type=int)
    rename.add_argument("title")
    rename.set_defaults(func=run_rename)

    delete = chats.add_parser("delete", help="delete a conversation")
    delete.add_argument("id", type=int)
    delete.set_defaults(func=run_delete)

    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _store() -> ConversationStore:
    from bubble_desktop.core.chat.store import ConversationStore
    from bubble_desktop.core.paths import Paths

    paths = Paths.default()
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    return ConversationStore(paths.chats_db)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def run_list(args: argparse.Namespace) -> int:
    with _store() as store:
        conversations = store.list_conversations(args.limit)
    if args.json:
        print(json.dumps([c.to_dict() for c in conversations], ensure_ascii=False))
        return 0
    for c in conversations:
        extras = []
        if c.kb_names:
            extras.append("kb: " + ", ".join(c.kb_names))
        if c.web:
            extras.append("web")
        tail = f"  [{'; '.join(extras)}]" if extras else ""
        print(f"{c.id:>5}  {_when(c.updated_at)}  {c.message_count:>3} msgs  {c.title}{tail}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _store() as store:
        if args.json:
            print(json.dumps(store.export_json(args.id), ensure_ascii=False))
        else:
            sys.stdout.write(store.export_markdown(args.id))
    return 0


def run_search(args: argparse.Namespace) -> int:
    with _store() as store:
        hits = store.search(args.text)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False))
        return 0
    for h in hits:
        print(f"{h.conversation_id:>5}  {h.title}: {h.snippet}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    with _store() as store:
        if args.format == "json":
            text = json.dumps(store.export_json(args.id), ensure_ascii=False, indent=2) + "\n"
        else:
            text = store.export_markdown(args.id)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from bubble_desktop.core.errors import ConversationError

    try:
        data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversationError(
            f"Could not read {args.file}: {exc}", "Pass a file made by `chats export --format json`."
        ) from exc
    if not isinstance(data, dict):
        raise ConversationError("This file is not a Bubble conversation export.")
    with _store() as store:
        new_id = store.import_json(data)
    print(new_id)
    return 0


def run_rename(args: argparse.Namespace) -> int:
    with _store() as store:
        store.rename(args.id, args.title)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with _store() as store:
        store.get_conversation(args.id)
        store.delete_conversation(args.id)
    return 0
