"""Packaging files agree with each other and with the code (fast, static).

The Windows installer and its workflow cannot run here; these checks catch the mistakes that would
only show on a Windows runner: a renamed output, a language dropped, a version not passed on, a
transformers model family the spec names that does not exist.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "bubble.spec"
ISS = ROOT / "installer" / "bubble.iss"
PS1 = ROOT / "installer" / "build.ps1"
WORKFLOW = ROOT / ".github" / "workflows" / "windows.yml"


def _spec_constant(name: str) -> object:
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in bubble.spec")


def test_spec_is_valid_python_and_names_both_entry_scripts() -> None:
    text = SPEC.read_text(encoding="utf-8")
    compile(text, str(SPEC), "exec")
    assert (ROOT / "installer" / "entry" / "bubble.py").is_file()
    assert (ROOT / "installer" / "entry" / "bubble-cli.py").is_file()
    assert 'name="bubble"' in text and 'name="bubble-cli"' in text
    assert "console=False" in text and "console=True" in text


def test_spec_transformers_families_exist_and_cover_the_tested_arches() -> None:
    families = _spec_constant("TRANSFORMERS_MODELS")
    assert isinstance(families, list)
    for family in families:
        assert importlib.util.find_spec(f"transformers.models.{family}") is not None, family
    # the tiny-model fixtures (and the engine tests) run these; MiniLM is a BERT
    for arch in ("llama", "qwen2", "gpt2", "bloom", "t5", "bert"):
        assert arch in families


def test_spec_covers_every_arch_gguf_import_can_convert() -> None:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    families = set(_spec_constant("TRANSFORMERS_MODELS"))  # type: ignore[arg-type]
    # GGUF architecture names that are not transformers model types (or not chat models we load)
    not_model_types = {"general", "tokenizer", "deci", "gpt_oss", "lfm2", "mamba", "minimax_m2", "gemma4"}
    missing = sorted(a for a in GGUF_CONFIG_MAPPING if a not in not_model_types and a not in families)
    assert not missing, f"GGUF can import {missing} but bubble.spec does not bundle those model families"


def test_installer_is_per_user_bilingual_and_versioned() -> None:
    raw = ISS.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM: Inno Setup before 6.3 needs it for the Chinese text"
    text = raw.decode("utf-8-sig")
    assert re.search(r"^PrivilegesRequired=lowest$", text, re.M)
    assert re.search(r"^DefaultDirName=\{autopf\}", text, re.M)
    assert re.search(r'^Name: "english"; MessagesFile: "compiler:Default.isl"$', text, re.M)
    assert re.search(r'^Name: "chinesesimplified"; MessagesFile: "\{#ChineseIsl\}"$', text, re.M)
    assert "AppVersion={#AppVersion}" in text
    assert "{autoprograms}\\{#AppName}" in text and "{autodesktop}\\{#AppName}" in text
    # every custom message exists in both languages
    english = set(re.findall(r"^english\.(\w+)=", text, re.M))
    chinese = set(re.findall(r"^chinesesimplified\.(\w+)=", text, re.M))
    assert english and english == chinese
    # user data is deleted only on an explicit "yes" (default button: no)
    assert "MB_DEFBUTTON2" in text and "usPostUninstall" in text


def test_build_script_passes_what_the_installer_needs() -> None:
    ps1 = PS1.read_text(encoding="utf-8")
    assert ps1.isascii(), "Windows PowerShell 5.1 reads a BOM-less script as ANSI: keep it ASCII"
    for define in ("/DAppVersion=", "/DChineseIsl=", "/DSourceDir=", "/DOutputDir="):
        assert define in ps1
    assert "bubble.spec" in ps1 and "--smoke-test" in ps1 and "--report" in ps1
    url = re.search(r"https://raw\.githubusercontent\.com/jrsoftware/issrc/(\w+)/\S+\.isl", ps1)
    assert url and re.fullmatch(r"[0-9a-f]{40}", url.group(1)), "pin the translation to a commit"


def test_workflow_runs_the_build_script_and_keeps_the_installer() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    job = workflow["jobs"]["installer"]
    assert job["runs-on"].startswith("windows")
    runs = " ".join(step.get("run", "") for step in job["steps"])
    assert "./installer/build.ps1" in runs
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    installer_path = uploads[0]["with"]["path"]
    output_name = re.search(r"^OutputBaseFilename=(.+)$", ISS.read_text(encoding="utf-8-sig"), re.M)
    assert output_name and installer_path == f"dist/installer/{output_name.group(1).strip()}.exe"


def test_wheel_lists_every_package_and_carries_the_resources() -> None:
    """pyproject.toml lists the packages by hand (to map resources/ into the wheel): none missing,
    and every icon and compiled translation the app loads is in the mapped package's data."""
    import fnmatch
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {
        ".".join(p.relative_to(ROOT).parent.parts)
        for p in (ROOT / "bubble_desktop").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert set(conf["packages"]) == on_disk | {"bubble_desktop._resources"}
    assert conf["package-dir"] == {"bubble_desktop._resources": "resources"}
    patterns = conf["package-data"]["bubble_desktop._resources"]
    needed = [p for p in (ROOT / "resources").rglob("*") if p.suffix in {".png", ".svg", ".ico", ".qm"}]
    needed = [p for p in needed if "screenshots" not in p.parts]
    assert needed
    for path in needed:
        rel = path.relative_to(ROOT / "resources").as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), rel


def test_spec_bundles_qts_chinese_translations_and_our_qm() -> None:
    """The file dialog and standard buttons need qtbase_zh_CN.qm from PySide6, the rest our .qm."""
    import PySide6

    kept = _spec_constant("QT_TRANSLATIONS_KEPT")
    assert isinstance(kept, tuple) and "qtbase_zh_CN" in kept
    shipped = Path(PySide6.__file__).parent / "Qt" / "translations" / "qtbase_zh_CN.qm"
    assert shipped.is_file(), "PySide6-Essentials no longer ships qtbase_zh_CN.qm"
    tree = ast.parse(SPEC.read_text(encoding="utf-8"))
    keep = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_keep")
    scope: dict[str, object] = {"Path": Path}
    for name in ("QT_PLUGIN_DIRS_KEPT", "QT_PLATFORMS_DROPPED", "QT_TRANSLATIONS_KEPT"):
        scope[name] = _spec_constant(name)
    exec(compile(ast.Module(body=[keep], type_ignores=[]), str(SPEC), "exec"), scope)
    assert scope["_keep"]("PySide6/Qt/translations/qtbase_zh_CN.qm")
    assert not scope["_keep"]("PySide6/Qt/translations/qtbase_de.qm")
    patterns = _spec_constant("RESOURCE_PATTERNS")
    assert isinstance(patterns, list) and "i18n/*.qm" in patterns
