"""Catalog loading, command-line codec specs and config hashes."""

from __future__ import annotations

import pytest

from bench.catalog import CatalogEntry, config_hash, load_catalog, parse_codec_specs
from bench.errors import UserError


def test_codec_specs_with_overrides():
    assert parse_codec_specs("jxl:effort=9,jpeg:subsampling=444") == [
        ("jxl", {"effort": 9}),
        ("jpeg", {"subsampling": 444}),
    ]
    assert parse_codec_specs("jpeg,jp2,lic") == [("jpeg", {}), ("jp2", {}), ("lic", {})]


def test_codec_spec_values_are_typed_as_toml():
    [(name, options)] = parse_codec_specs("avif:speed=6:subsampling=420:tune=ssim,fast=true,ratio=2.5")
    assert name == "avif"
    assert options == {"speed": 6, "subsampling": 420, "tune": "ssim", "fast": True, "ratio": 2.5}


@pytest.mark.parametrize("text", ["", ",", "effort=9,jxl", "jxl:effort"])
def test_bad_codec_specs_are_user_errors(text):
    with pytest.raises(UserError):
        parse_codec_specs(text)


def test_catalog_entries_are_complete():
    catalog = load_catalog()
    assert {"jpeg", "jp2", "webp", "jxl", "avif", "heic", "lic"} <= set(catalog)
    for entry in catalog.values():
        assert len(entry.qualities) >= 6, entry.name
        assert entry.options.get("threads") == 1, entry.name


def test_config_hash_covers_options_threads_and_versions():
    entry = CatalogEntry("x", "imagecodecs.jpeg", "d", "r", "q", (1.0, 2.0), True, {"subsampling": "420"})
    base = config_hash(entry, 1, {"lib": "1.0"})
    assert base == config_hash(CatalogEntry.from_dict(entry.to_dict()), 1, {"lib": "1.0"})
    assert base != config_hash(entry.with_options({"subsampling": "444"}), 1, {"lib": "1.0"})
    assert base != config_hash(entry, 2, {"lib": "1.0"})
    assert base != config_hash(entry, 1, {"lib": "1.1"})


def test_catalog_entry_missing_key_is_a_user_error():
    with pytest.raises(UserError, match="missing catalog key"):
        CatalogEntry.from_dict({"name": "x", "adapter": "y"}, source="x.toml")
