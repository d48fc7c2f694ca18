"""bubble-cli kb: create, fill, list and search knowledge bases.

``--json`` output is a stable contract for scripts: keys may be added, never renamed or removed.
``kb search NAME -`` reads one query per line from stdin and (with ``--json``) writes one JSON array
of hits per line, so many queries pay the model load once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    kb = sub.add_parser("kb", help="knowledge bases: index your files and search them")
    kbsub = kb.add_subparsers(dest="kb_command", metavar="ACTION")
    kb.set_defaults(func=lambda args: (kb.print_help(), 0)[1])

    p = kbsub.add_parser("create", help="create an empty knowledge base")
    p.add_argument("name")
    p.add_argument(
        "--backend",
        choices=("edge", "qdrant", "milvus-lite", "milvus"),
        default=None,
        help="vector database (default: knowledge.vector_store; servers use the URL in the settings)",
    )
    p.add_argument("--json", action="store_true", help="print the new knowledge base as JSON")
    p.set_defaults(func=_create)

    p = kbsub.add_parser("list", help="list knowledge bases")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)

    p = kbsub.add_parser("docs", help="list the documents of a knowledge base")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_docs)

    p = kbsub.add_parser("add", help="index files and folders (only what changed is re-indexed)")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_add)

    p = kbsub.add_parser("remove", help="remove a document (or a folder's documents) from a knowledge base")
    p.add_argument("name")
    p.add_argument("path")
    p.set_defaults(func=_remove)

    p = kbsub.add_parser("delete", help="delete a knowledge base and its index (your files stay)")
    p.add_argument("name")
    p.set_defaults(func=_delete)

    p = kbsub.add_parser("rename", help="rename a knowledge base")
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(func=_rename)

    p = kbsub.add_parser("reindex", help="rebuild the index with the current embedding model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_reindex)

    p = kbsub.add_parser(
        "search", help="search a knowledge base; QUERY '-' reads one query per line from stdin"
    )
    p.add_argument("name", help="knowledge base name (comma-separated for several)")
    p.add_argument("query")
    p.add_argument("-k", "--top-k", type=int, default=None, help="number of hits (default: settings)")
    p.add_argument("--threshold", type=float, default=None, help="minimum cosine score of dense hits")
    p.add_argument(
        "--min-relevance",
        type=float,
        default=None,
        help="leave out hits less relevant than this (0-1; default: the setting, 0 keeps the best hits)",
    )
    hy = p.add_mutually_exclusive_group()
    hy.add_argument(
        "--hybrid", dest="hybrid", action="store_true", default=None, help="dense + BM25 (default)"
    )
    hy.add_argument("--dense-only", dest="hybrid", action="store_false", help="meaning-based search only")
    p.add_argument("--doc", action="append", metavar="PATH", help="only search this document (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON array of hits per query, one per line")
    p.set_defaults(func=_search)


def _service() -> Any:
    from bubble_desktop.core.kb.service import KnowledgeService
    from bubble_desktop.core.paths import Paths
    from bubble_desktop.core.settings import load_settings

    paths = Paths.default()
    settings, notices = load_settings(paths.settings_file)
    for n in notices:
        print(f"warning: {n}", file=sys.stderr)
    return KnowledgeService(paths, settings.knowledge)


def _base_json(b: Any) -> dict[str, Any]:
    return {
        "name": b.name,
        "documents": b.documents,
        "chunks": b.chunks,
        "embedding_model": b.embedding_model,
        "dim": b.dim,
        "created": b.created,
        "backend": b.backend,
        "location": b.location,
        "notice": b.notice,
    }


def _create(args: argparse.Namespace) -> int:
    with _service() as svc:
        info = svc.create_base(args.name, args.backend)
    if args.json:
        print(json.dumps(_base_json(info), ensure_ascii=False))
    else:
        print(f"created knowledge base '{info.name}' ({info.backend})")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    with _service() as svc:
        bases = svc.list_bases()
    if args.json:
        print(json.dumps([_base_json(b) for b in bases], ensure_ascii=False))
        return EXIT_OK
    if not bases:
        print("no knowledge bases yet (bubble-cli kb create NAME)")
    for b in bases:
        print(f"{b.name}\t{b.documents} documents\t{b.chunks} chunks\t{b.embedding_model}\t{b.backend}")
        if b.notice:
            print(f"  note: {b.notice}")
    return EXIT_OK


def _docs(args: argparse.Namespace) -> int:
    with _service() as svc:
        docs = svc.documents(args.name)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "doc_id": d.doc_id,
                        "path": d.path,
                        "type": d.type,
                        "chunks": d.chunks,
                        "size": d.size,
                        "added": d.added,
                        "status": d.status,
                        "error": d.error,
                    }
                    for d in docs
                ],
                ensure_ascii=False,
            )
        )
        return EXIT_OK
    for d in docs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.added))
        extra = f"\t{d.error}" if d.error else ""
        print(f"{d.status}\t{d.type}\t{d.chunks} chunks\t{d.size} B\t{when}\t{d.path}{extra}")
    return EXIT_OK


class _Progress:
    """Progress on stderr: one rewritten line on a terminal, a line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        done = p.files_done >= p.files_total
        if not self.tty and not done and now - self.last < 2.0:
            return
        self.last = now
        eta = f", ~{p.eta_s:.0f} s left" if p.eta_s is not None and not done else ""
        line = f"{p.files_done}/{p.files_total} files, {p.chunks_done} chunks ({p.chunks_per_s:.1f}/s){eta}"
        if self.tty:
            print(f"\r\x1b[K{line}", end="\n" if done else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


def _report(report: Any, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "indexed": list(report.indexed),
                    "unchanged": list(report.unchanged),
                    "failed": [{"path": f.path, "reason": f.reason} for f in report.failed],
                    "cancelled": report.cancelled,
                    "chunks_added": report.chunks_added,
                },
                ensure_ascii=False,
            )
        )
    for f in report.failed:
        print(f"failed: {f.path}: {f.reason}", file=sys.stderr)
    if not as_json:
        print(
            f"indexed {len(report.indexed)}, unchanged {len(report.unchanged)}, failed {len(report.failed)}, "
            f"{report.chunks_added} chunk{'' if report.chunks_added == 1 else 's'} added"
            + (" (cancelled)" if report.cancelled else ""),
            file=sys.stderr,
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def _wait_for_index(svc: Any, quiet: bool) -> None:
    if svc.index_builds_running():
        if not quiet:
            print("building the search index (large knowledge base)...", file=sys.stderr, flush=True)
        svc.wait_for_index_builds()


def _add(args: argparse.Namespace) -> int:
    with _service() as svc:
        report = svc.add_paths(args.name, args.paths, progress=_Progress(args.quiet))
        _wait_for_index(svc, args.quiet)
    return _report(report, args.json)


def _reindex(args: argparse.Namespace) -> int:
    with _service() as svc:
        report = svc.reindex(args.name, progress=_Progress(args.quiet))
        _wait_for_index(svc, args.quiet)
    return _report(report, args.json)


def _remove(args: argparse.Namespace) -> int:
    with _service() as svc:
        svc.remove_document(args.name, args.path)
    print(f"removed {args.path} from '{args.name}'")
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    with _service() as svc:
        svc.delete_base(args.name)
    print(f"deleted knowledge base '{args.name}'")
    return EXIT_OK


def _rename(args: argparse.Namespace) -> int:
    with _service() as svc:
        svc.rename_base(args.old, args.new)
    print(f"renamed '{args.old}' to '{args.new}'")
    return EXIT_OK


def _search(args: argparse.Namespace) -> int:
    names = [n for n in args.name.split(",") if n] if "," in args.name else args.name
    queries = (line.rstrip("\n") for line in sys.stdin) if args.query == "-" else iter([args.query])
    with _service() as svc:
        for q in queries:
            hits = (
                svc.search(
                    names,
                    q,
                    top_k=args.top_k,
                    score_threshold=args.threshold,
                    min_relevance=args.min_relevance,
                    hybrid=args.hybrid,
                    doc_filter=args.doc,
                )
                if q.strip()
                else []
            )
            if args.json:
                print(json.dumps([h.to_json() for h in hits], ensure_ascii=False), flush=True)
                continue
            if args.query == "-":
                print(f"# {q}")
            if not hits:
                print("no hits")
            for n, h in enumerate(hits, 1):
                title = f" [{h.title}]" if h.title else ""
                text = " ".join(h.text.split())
                print(f"{n}. {h.score:.4f}  {h.path} ({h.position}){title}\n   {text[:300]}")
            sys.stdout.flush()
    return EXIT_OK
