"""The curated model catalog shipped in ``resources/models/catalog.json``, validated on load.

Each entry names the model, what it needs (RAM/VRAM, disk), its licence and languages, the files to
fetch and, per hub, the repo they live in (Hugging Face and ModelScope ids differ). ``source_note`` says
where each fact was checked. File paths: ``a|b`` = the first of these the repo has, ``*`` = a glob over
the repo's file list; a file with a ``size`` is required, the others are taken when present.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bubble_desktop.core.errors import UserFacingError

Kind = Literal["chat", "embedding"]
Format = Literal["gguf", "transformers", "sentence-transformers"]
HubName = Literal["hf", "modelscope"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class CatalogError(UserFacingError):
    default_hint = "The model catalog shipped with Bubble is damaged; reinstall Bubble."


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Frozen):
    path: str = Field(min_length=1)
    size: int | None = Field(None, gt=0, description="bytes; required file when set")
    size_approx: bool = False
    sha256: str | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is not None and not _SHA256.match(v):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return v

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        for alt in v.split("|"):
            if not alt or alt.startswith("/") or ".." in alt.split("/") or "\\" in alt:
                raise ValueError(f"file path {v!r} must be relative, without '..'")
        return v

    @property
    def required(self) -> bool:
        return self.size is not None

    @property
    def alternatives(self) -> tuple[str, ...]:
        return tuple(self.path.split("|"))


class SourceRef(_Frozen):
    repo: str
    revision: str = ""  # empty: the hub's default branch (main on HF, master on ModelScope)
    files: tuple[FileSpec, ...] = ()  # only when this hub's file names differ from the entry's

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not _REPO.match(v):
            raise ValueError(f"repo {v!r} is not 'owner/name'")
        return v


class CatalogEntry(_Frozen):
    id: str
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    kind: Kind
    format: Format
    params_b: float = Field(gt=0, description="parameters, billions")
    quant: str = Field(min_length=1)
    context: int = Field(gt=0)
    ram_gb: float = Field(gt=0, description="RAM to run it on the CPU")
    vram_gb: float = Field(ge=0, description="GPU memory to run it on a GPU (0: not meant for one)")
    languages: tuple[str, ...] = Field(min_length=1)
    licence: str = Field(min_length=1)
    remote_code: bool = False
    files: tuple[FileSpec, ...] = Field(min_length=1)
    sources: dict[HubName, SourceRef] = Field(min_length=1)
    source_note: str = Field(min_length=10)
    note: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"id {v!r} must be lower-case letters, digits, '.', '-' or '_'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if not any(f.required for f in self.files):
            raise ValueError(f"{self.id}: no file has a size (the weights must be listed with their size)")
        if self.format == "gguf":
            if self.kind != "chat":
                raise ValueError(f"{self.id}: GGUF entries are chat models")
            if not all(f.path.endswith(".gguf") for f in self.files if f.required):
                raise ValueError(f"{self.id}: a GGUF entry's weights must be .gguf files")
        return self

    @property
    def size_bytes(self) -> int:
        """Download size of the required files (approximate where the catalog says so)."""
        return sum(f.size or 0 for f in self.files)

    @property
    def size_approx(self) -> bool:
        return any(f.size_approx for f in self.files)

    def files_for(self, hub: HubName) -> tuple[FileSpec, ...]:
        ref = self.sources.get(hub)
        return ref.files if ref is not None and ref.files else self.files

    def to_dict(self) -> dict[str, object]:
        d = self.model_dump(mode="json")
        d["size_bytes"] = self.size_bytes
        return d


class Catalog(_Frozen):
    schema_version: int = Field(1, ge=1, le=1)
    about: str = ""
    entries: tuple[CatalogEntry, ...]

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen: set[str] = set()
        for e in self.entries:
            if e.id in seen:
                raise ValueError(f"duplicate catalog id {e.id!r}")
            seen.add(e.id)
        return self

    def get(self, entry_id: str) -> CatalogEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def find(self, id_or_repo: str) -> CatalogEntry | None:
        """An entry by its id, or by one of its repo ids (any hub, case-insensitive)."""
        hit = self.get(id_or_repo)
        if hit is not None:
            return hit
        low = id_or_repo.lower()
        return next((e for e in self.entries if any(r.repo.lower() == low for r in e.sources.values())), None)

    def of_kind(self, kind: Kind) -> list[CatalogEntry]:
        return [e for e in self.entries if e.kind == kind]


def default_catalog_path() -> Path:
    """resources/models/catalog.json in a checkout, bubble_desktop/_resources/models/ in a wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "resources", here.parents[2] / "_resources"):
        p = candidate / "models" / "catalog.json"
        if p.is_file():
            return p
    return here.parents[3] / "resources" / "models" / "catalog.json"


def parse_catalog(data: object) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise CatalogError(f"The model catalog is invalid: {where}: {first.get('msg')}") from exc


def load_catalog(path: str | Path | None = None) -> Catalog:
    p = Path(path) if path is not None else default_catalog_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"The model catalog {p} could not be read ({exc.strerror or exc}).") from exc
    except ValueError as exc:
        raise CatalogError(f"The model catalog {p} is not valid JSON ({exc}).") from exc
    return parse_catalog(data)


@lru_cache(maxsize=1)
def shipped_catalog() -> Catalog:
    """The catalog that ships with Bubble (read once)."""
    return load_catalog()
