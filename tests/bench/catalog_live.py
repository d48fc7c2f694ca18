"""Check every catalog entry against the live hubs (run on a machine with internet; prints JSON).

For each entry and each source it names (Hugging Face, hf-mirror for the same repos, ModelScope), plan
the download exactly as ``bubble-cli models download ID --source S`` would (list the repo, pick the
files) without fetching a byte of weights, and compare what the hub lists with the catalog: a file
that is missing, a size or sha256 that differs. Exit status 1 when anything differs, so a release
check can run it.

The catalog's ids and sizes were taken from public code because no hub is reachable from the
machines this project is built on; this is the check that could not be run there.

Run: ``.venv/bin/python tests/bench/catalog_live.py [--sources hf,hf-mirror,modelscope] [--only ID]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def check(sources: list[str], only: str = "", catalog: Any = None, paths: Any = None) -> dict[str, object]:
    from bubble_desktop.core.models.catalog import shipped_catalog
    from bubble_desktop.core.models.download import DownloadManager, DownloadRequest
    from bubble_desktop.core.models.sources import DownloadError
    from bubble_desktop.core.paths import Paths

    catalog = catalog or shipped_catalog()
    paths = paths or Paths.under(Path(tempfile.mkdtemp(prefix="bubble-catalog-check-"))).ensure()
    manager = DownloadManager(paths, catalog=catalog, proxy="")
    rows: list[dict[str, object]] = []
    with manager.client() as client:
        for entry in catalog.entries:
            if only and entry.id != only:
                continue
            for source in sources:
                hub = "modelscope" if source == "modelscope" else "hf"
                if hub not in entry.sources:
                    continue
                row: dict[str, object] = {"id": entry.id, "source": source, "repo": entry.sources[hub].repo}
                try:
                    plan = manager.plan(DownloadRequest(entry.id, source=source), client)
                except DownloadError as exc:
                    row.update(ok=False, error=exc.message)
                    rows.append(row)
                    continue
                problems = []
                for spec in entry.files_for(hub):
                    listed = next((f for f in plan.files if f.path in spec.alternatives), None)
                    if listed is None:
                        if spec.required:
                            problems.append(f"{spec.path}: not in the repo")
                        continue
                    if spec.size and not spec.size_approx and listed.size not in (None, spec.size):
                        problems.append(
                            f"{listed.path}: size {listed.size} on the hub, {spec.size} in the catalog"
                        )
                    if spec.sha256 and listed.sha256 and listed.sha256 != spec.sha256:
                        problems.append(f"{listed.path}: sha256 differs")
                row.update(ok=not problems, problems=problems, files=len(plan.files), bytes=plan.total_bytes)
                rows.append(row)
    return {"checked": len(rows), "failed": sum(1 for r in rows if not r["ok"]), "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", default="hf,hf-mirror,modelscope")
    parser.add_argument("--only", default="", help="one catalog id")
    args = parser.parse_args()
    result = check([s.strip() for s in args.sources.split(",") if s.strip()], args.only)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
