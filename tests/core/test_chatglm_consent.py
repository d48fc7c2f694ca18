"""Remote-code consent: remembered per folder and per hash of its .py files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bubble_desktop.core.llm.consent import ConsentStore, code_hash
from bubble_desktop.core.paths import Paths


def _folder(tmp_path: Path, name: str = "model") -> Path:
    d = tmp_path / name
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "modeling_x.py").write_text("A = 1\n")
    (d / "sub" / "helper.py").write_text("B = 2\n")
    return d


def test_trust_is_remembered_across_instances_in_bubble_home(tmp_path: Path, bubble_home: Path) -> None:
    d = _folder(tmp_path)
    assert not ConsentStore().is_trusted(d)
    ConsentStore().trust(d)
    assert ConsentStore().is_trusted(d)
    assert Paths.default().consent_file.is_file()
    assert str(Paths.default().consent_file).startswith(str(bubble_home))


def test_changed_added_or_renamed_code_asks_again(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "consent.json")
    d = _folder(tmp_path)
    store.trust(d)
    (d / "modeling_x.py").write_text("A = 2\n")
    assert not store.is_trusted(d)
    store.trust(d)
    (d / "extra.py").write_text("")
    assert not store.is_trusted(d)
    store.trust(d)
    (d / "extra.py").rename(d / "other.py")
    assert not store.is_trusted(d)
    # weights and configs are not code: changing them keeps the consent
    store.trust(d)
    (d / "config.json").write_text('{"x": 1}')
    assert store.is_trusted(d)


def test_consent_is_per_folder_and_revocable(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "consent.json")
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    assert code_hash(a) == code_hash(b)  # same code, but consent is still per folder
    store.trust(a)
    assert store.is_trusted(a) and not store.is_trusted(b)
    store.revoke(a)
    assert not store.is_trusted(a)
    store.revoke(a)  # revoking twice is harmless


def test_corrupt_file_means_not_trusted_and_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "consent.json"
    path.write_text("{not json")
    store = ConsentStore(path)
    d = _folder(tmp_path)
    assert not store.is_trusted(d)
    store.trust(d)
    assert store.is_trusted(d)


def test_missing_folder_is_not_trusted(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "consent.json")
    d = _folder(tmp_path)
    store.trust(d)
    import shutil

    shutil.rmtree(d)
    assert not store.is_trusted(d)


@pytest.mark.parametrize("relative", [True, False])
def test_same_folder_by_relative_or_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    store = ConsentStore(tmp_path / "consent.json")
    d = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    store.trust("model" if relative else d)
    assert store.is_trusted(d) and store.is_trusted("model")
