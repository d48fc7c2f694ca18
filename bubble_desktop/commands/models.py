"""bubble-cli models: the catalog, downloads from the hubs, GGUF import/registration, listing, removal."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("models", help="download, import and list models", description="Manage local models.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    imp = msub.add_parser(
        "import-gguf", help="convert a GGUF file once into a model folder and print its path"
    )
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
    cat = msub.add_parser("catalog", help="models Bubble can download, and how well each fits this machine")
    cat.add_argument("--json", action="store_true")
    cat.add_argument("--kind", choices=("chat", "embedding"), help="only chat or only embedding models")
    cat.add_argument("--language", default="", help="recommend for this language (zh, en, ...)")
    cat.set_defaults(func=run_catalog)
    dl = msub.add_parser(
        "download",
        help="download a catalog model or a hub repo (resumes an interrupted download)",
        description="Download a model from Hugging Face, hf-mirror, ModelScope or your own hub. Nothing is "
        "fetched until you run this. An interrupted download continues where it stopped.",
    )
    dl.add_argument("target", metavar="ID-or-REPO", help="a catalog id (see 'models catalog') or owner/name")
    dl.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="F",
        help="only this file of the repo (repeatable; globs allowed)",
    )
    dl.add_argument(
        "--source",
        default="auto",
        metavar="SRC",
        help="auto (default), hf, hf-mirror, modelscope, or the URL of a Hugging Face-compatible hub",
    )
    dl.add_argument("--revision", default="", help="branch, tag or commit (default: the hub's main branch)")
    dl.add_argument(
        "--name", default="", help="the name to use it by (default: the catalog id or owner--name)"
    )
    dl.add_argument("--parallel", type=int, default=3, help="files downloaded at once (default 3)")
    dl.add_argument("--json", action="store_true", help="progress and the result as JSON lines on stdout")
    dl.set_defaults(func=run_download)
    se = msub.add_parser(
        "search",
        help="search Hugging Face (or hf-mirror) for models by name",
        description="Search a Hugging Face-compatible hub by name. The query is sent to the hub.",
    )
    se.add_argument("query", help="words in the repo id, e.g. qwen2.5 gguf")
    se.add_argument("--source", default="auto", metavar="SRC", help="auto (default), hf, hf-mirror or a URL")
    se.add_argument("--limit", type=int, default=20)
    se.add_argument("--files", action="store_true", help="also list the files of the best hit")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=run_search)
    rm = msub.add_parser("remove", help="delete a downloaded model (and its registration)")
    rm.add_argument("name", help="the downloaded model's name or catalog id")
    rm.add_argument("--json", action="store_true")
    rm.set_defaults(func=run_remove)
    src = msub.add_parser(
        "sources",
        help="show or set where 'auto' downloads from (order, endpoints)",
        description="Show the model sources, or set the order 'auto' tries them in and their endpoints.",
    )
    src.add_argument("--order", metavar="A,B,C", help="e.g. hf-mirror,modelscope,hf (first reachable wins)")
    src.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="point hf, hf-mirror or modelscope at another URL (repeatable); NAME= resets it",
    )
    src.add_argument(
        "--hf-token",
        metavar="TOKEN",
        help="a Hugging Face access token for gated models (sent to huggingface.co only); '' removes it",
    )
    src.add_argument("--json", action="store_true")
    src.set_defaults(func=run_sources)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_search(args: argparse.Namespace) -> int:
    from bubble_desktop.core.models.download import DownloadManager

    manager = DownloadManager()
    where, hits = manager.search(args.query, args.source, args.limit)
    files = manager.list_repo(hits[0].repo, args.source).files if args.files and hits else ()
    if args.json:
        print(
            json.dumps(
                {
                    "source": where,
                    "hits": [
                        {"repo": h.repo, "downloads": h.downloads, "likes": h.likes, "gguf": h.gguf}
                        for h in hits
                    ],
                    "files": [{"path": f.path, "size": f.size} for f in files],
                },
                ensure_ascii=False,
            )
        )
        return 0
    if not hits:
        print(f"nothing on {where} matches {args.query!r}")
        return 0
    print(f"{len(hits)} on {where}:")
    for h in hits:
        print(f"  {h.repo:<60} {h.downloads:>10,} downloads{'  GGUF' if h.gguf else ''}")
    for f in files:
        print(f"    {f.path}  {(f.size or 0) / 2**20:,.0f} MB")
    return 0


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
    from bubble_desktop.core.models.download import DownloadManager

    reg = registered()
    rows = [(f.name, str(f)) for f in list_imported()] + sorted(reg.items())
    known = set(reg) | {n for n, _ in rows}
    rows += [
        (str(d["name"]), str(d["path"])) for d in DownloadManager().downloaded() if d["name"] not in known
    ]
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


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def run_catalog(args: argparse.Namespace) -> int:
    from bubble_desktop.core.models.catalog import CatalogEntry, Kind, shipped_catalog
    from bubble_desktop.core.models.machine import detect, fit, fit_reason, recommend
    from bubble_desktop.core.paths import Paths

    catalog = shipped_catalog()
    machine = detect(Paths.default().models_dir)
    language = args.language or _ui_language()
    kinds: tuple[Kind, ...] = (args.kind,) if args.kind else ("chat", "embedding")
    best: dict[str, CatalogEntry | None] = {}
    for k in kinds:
        picks = recommend(catalog, machine, k, language)
        best[k] = picks[0] if picks else None
    entries = [e for e in catalog.entries if e.kind in kinds]
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine.to_dict(),
                    "language": language,
                    "recommended": {k: (b.id if b else None) for k, b in best.items()},
                    "entries": [
                        {**e.to_dict(), "fit": fit(e, machine), "fit_reason": fit_reason(e, machine)}
                        for e in entries
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    gpu = (
        f", GPU {machine.gpu_name} {machine.vram_free_gb:.1f} GB free" if machine.vram_free_gb else ", no GPU"
    )
    print(f"This machine: {machine.ram_total_gb:.1f} GB RAM{gpu}, {machine.disk_free_gb:.0f} GB free disk")
    for e in entries:
        star = "*" if any(b is not None and b.id == e.id for b in best.values()) else " "
        size = ("~" if e.size_approx else "") + _gb(e.size_bytes)
        print(
            f"{star} {e.id:40} {e.kind:9} {size:>9}  {fit(e, machine):9}  {','.join(e.languages):12} "
            f"{'/'.join(sorted(e.sources))}"
        )
    print("* recommended for this machine. Download with: bubble-cli models download ID")
    return 0


def _ui_language() -> str:
    import locale

    lang = (locale.getlocale()[0] or "").lower()
    return "zh" if lang.startswith("zh") else "en"


class _Printer:
    """Download progress: a one-line bar on a terminal, JSON lines with --json, quiet otherwise."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self._last_msg = ""

    def progress(self, p: object) -> None:
        from bubble_desktop.core.models.download import Progress

        assert isinstance(p, Progress)
        if self.as_json:
            print(json.dumps({"event": "progress", **p.to_dict()}, ensure_ascii=False), flush=True)
            return
        if p.message and p.message != self._last_msg:
            self._last_msg = p.message
            print(("\n" if self.tty else "") + f"note: {p.message}", file=sys.stderr, flush=True)
        if not self.tty or not p.total_bytes:
            return
        width = 28
        filled = int(width * p.fraction)
        eta = f"ETA {int(p.eta_s // 60)}:{int(p.eta_s % 60):02d}" if p.eta_s is not None else ""
        line = (
            f"\r[{'#' * filled}{'-' * (width - filled)}] {p.fraction:4.0%} {_gb(p.done_bytes)}/"
            f"{_gb(p.total_bytes)} {p.speed_bps / 1e6:5.1f} MB/s {eta:10} {p.state:11}"
        )
        print(line, end="", file=sys.stderr, flush=True)

    def finished(self, result: object) -> None:
        if self.tty and not self.as_json:
            print(file=sys.stderr)

    def failed(self, job_id: int, error: BaseException) -> None:
        if self.tty and not self.as_json:
            print(file=sys.stderr)


def run_download(args: argparse.Namespace) -> int:
    from bubble_desktop.core.errors import UserFacingError
    from bubble_desktop.core.models.download import DownloadCancelled, DownloadManager, DownloadRequest

    request = DownloadRequest(args.target, tuple(args.file), args.source, args.revision, args.name)
    printer = _Printer(args.json)
    manager = DownloadManager(parallel=max(1, args.parallel))
    try:
        result = manager.download(request, printer)
    except UserFacingError as exc:
        if args.json:
            print(json.dumps({"event": "error", **exc.to_dict()}, ensure_ascii=False), flush=True)
        raise
    except DownloadCancelled:
        print("cancelled; run the same command again to continue", file=sys.stderr)
        return 130
    plan = result.plan
    if args.json:
        print(
            json.dumps(
                {
                    "event": "done",
                    "path": str(result.path),
                    "name": result.registered_name or plan.name,
                    "registered": bool(result.registered_name),
                    "source": plan.source,
                    "repo": plan.repo,
                    "revision": plan.revision,
                    "files": [f.path for f in plan.files],
                    "bytes": plan.total_bytes,
                    "remote_code": plan.remote_code,
                },
                ensure_ascii=False,
            )
        )
    else:
        print(result.path)
        if result.registered_name:
            print(
                f"registered: bubble-cli ask --model {result.registered_name} QUESTION",
                file=sys.stderr,
            )
        if plan.remote_code:
            print(
                "this model ships its own Python code: Bubble asks before running it "
                "(or pass --trust-remote-code)",
                file=sys.stderr,
            )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from bubble_desktop.core.models.download import DownloadManager

    folder = DownloadManager().remove(args.name)
    if args.json:
        print(json.dumps({"removed": str(folder)}, ensure_ascii=False))
    else:
        print(f"removed {folder}")
    return 0


def run_sources(args: argparse.Namespace) -> int:
    from bubble_desktop.core.models.sources import BUILTIN, DownloadError, SourceConfig, config_path

    cfg = SourceConfig.load()
    changed = False
    if args.order:
        order = [x.strip() for x in args.order.split(",") if x.strip()]
        for name in order:
            cfg.source(name)  # refuses unknown names
        cfg.order, changed = order, True
    for item in args.endpoint:
        name, _, url = item.partition("=")
        if name not in BUILTIN:
            raise DownloadError(f"Unknown source {name!r}.", "Use hf, hf-mirror or modelscope.")
        if url.strip():
            if not url.startswith(("http://", "https://")):
                raise DownloadError(f"{url!r} is not an http(s) URL.")
            cfg.endpoints[name] = url.strip().rstrip("/")
        else:
            cfg.endpoints.pop(name, None)
        changed = True
    if args.hf_token is not None:
        cfg.hf_token, changed = args.hf_token.strip(), True
    if changed:
        cfg.save()
    rows = [{"name": n, "endpoint": cfg.endpoint(n), "in_auto": n in cfg.order} for n in BUILTIN]
    if args.json:
        print(
            json.dumps(
                {
                    "order": cfg.order,
                    "last_good": cfg.last_good,
                    "sources": rows,
                    "hf_token_set": bool(cfg.hf_token),
                    "file": str(config_path()),
                }
            )
        )
    else:
        print(
            f"auto tries: {', '.join(cfg.order)}"
            + (f" (last worked: {cfg.last_good})" if cfg.last_good else "")
        )
        for r in rows:
            print(f"  {r['name']:11} {r['endpoint']}")
        if cfg.hf_token:
            print("  a Hugging Face token is set (sent to huggingface.co only)")
    return 0
