import os

import numpy as np
import pytest
from conftest import write_csv_dataset, write_image

from mmgenre.data.records import DataError, load_records
from mmgenre.data.validate import select_modalities, validate


@pytest.fixture
def messy_dir(tmp_path):
    """One row per kind of bad input, plus good rows, in the CSV layout."""
    root = tmp_path / "messy"
    (root / "posters").mkdir(parents=True)
    P = lambda name: os.path.join("posters", name)  # noqa: E731
    write_image(root / "posters/good.jpg")
    write_image(root / "posters/good2.jpg", seed=1)
    (root / "posters/empty.jpg").write_bytes(b"")
    write_image(root / "posters/trunc.jpg", size=(64, 64))
    data = (root / "posters/trunc.jpg").read_bytes()
    (root / "posters/trunc.jpg").write_bytes(data[: len(data) // 2])
    (root / "posters/text.jpg").write_text("this is not an image")
    write_image(root / "posters/png.jpg", fmt="PNG")
    write_image(root / "posters/gif.jpg", mode="P", fmt="GIF")
    write_image(root / "posters/gray.jpg", mode="L")
    write_image(root / "posters/cmyk.jpg", mode="CMYK")
    write_image(root / "posters/rgba.png", mode="RGBA", fmt="PNG")
    write_image(root / "posters/huge.jpg", size=(120, 120))
    good = dict(genres="Drama", overview="A fine story.", split="train")
    rows = [
        dict(id="ok", title="Ok", poster=P("good.jpg"), **good),
        dict(id="missing", title="Missing", poster=P("nothere.jpg"), **good),
        dict(id="empty", title="Empty", poster=P("empty.jpg"), **good),
        dict(id="trunc", title="Trunc", poster=P("trunc.jpg"), **good),
        dict(id="text", title="Text", poster=P("text.jpg"), **good),
        dict(id="png", title="Png", poster=P("png.jpg"), **good),
        dict(id="gif", title="Gif", poster=P("gif.jpg"), **good),
        dict(id="gray", title="Gray", poster=P("gray.jpg"), **good),
        dict(id="cmyk", title="Cmyk", poster=P("cmyk.jpg"), **good),
        dict(id="rgba", title="Rgba", poster=P("rgba.png"), **good),
        dict(id="huge", title="Huge", poster=P("huge.jpg"), **good),
        dict(id="nooverview", title="NoOverview", poster=P("good2.jpg"), genres="Drama",
             overview="  ", split="train"),
        dict(id="latin1", title="Latin1", poster=P("good.jpg"), genres="Drama",
             overview="MARKER", split="train"),
        dict(id="badsplit", title="BadSplit", poster=P("good.jpg"), genres="Drama",
             overview="x", split="validation"),
        dict(id="ok", title="Dup", poster=P("good.jpg"), **good),
        dict(id="nogenre", title="NoGenre", poster=P("good.jpg"), genres="", overview="x",
             split="train"),
    ]
    write_csv_dataset(root, rows)
    csv = root / "movies.csv"
    # A Latin-1 byte (0xE9) that is not valid UTF-8, in one row's overview.
    csv.write_bytes(csv.read_bytes().replace(b"MARKER", b"caf\xe9 story"))
    return str(root)


def test_every_bad_input_is_counted_by_reason(messy_dir):
    with pytest.warns(UserWarning, match="skipped bad input"):
        table, report = validate(load_records(messy_dir), max_image_pixels=100 * 100)
    assert dict(report.counts) == {
        "missing_poster": 1, "empty_file": 1, "truncated_image": 1, "not_an_image": 1,
        "huge_image": 1, "missing_overview": 1, "non_utf8": 1, "unknown_split": 1,
        "duplicate_id": 1, "no_genres": 1}
    assert dict(report.notes) == {"format_mismatch": 2, "converted_to_rgb": 4}
    assert "movies.csv line 3" in report.examples["missing_poster"][0]  # names the row
    assert "nothere.jpg" in report.examples["missing_poster"][0]  # and the file
    # Row-level problems drop the row; modality problems keep the other modality.
    assert set(table["id"]) == {"ok", "missing", "empty", "trunc", "text", "png", "gif", "gray",
                                "cmyk", "rgba", "huge", "nooverview", "latin1"}
    by_id = table.set_index("id")
    assert not by_id.loc["missing", "has_poster"] and by_id.loc["missing", "has_overview"]
    assert by_id.loc["nooverview", "has_poster"] and not by_id.loc["nooverview", "has_overview"]
    assert set(select_modalities(table, ["overview"])["id"]) == set(table["id"]) - {"nooverview", "latin1"}
    assert set(select_modalities(table, ["poster", "overview"])["id"]) == {
        "ok", "png", "gif", "gray", "cmyk", "rgba"}


def test_strict_policy_names_file_and_reason(messy_dir):
    with pytest.raises(DataError, match=r"truncated_image .*trunc\.jpg"):
        validate(load_records(messy_dir), policy="strict")


def test_posters_only_dataset_is_not_flagged_for_missing_overviews(messy_dir):
    _, report = validate(load_records(messy_dir), modalities=("poster",), policy="skip")
    assert "missing_overview" not in report.counts and "non_utf8" not in report.counts


def test_converted_posters_decode_to_three_channels(messy_dir):
    from mmgenre.data.pipeline import read_poster

    for name in ("png.jpg", "gif.jpg", "gray.jpg", "cmyk.jpg", "rgba.png"):
        image = read_poster(os.path.join(messy_dir, "posters", name), (16, 12)).numpy()
        assert image.shape == (16, 12, 3) and image.dtype == np.uint8, name


def test_validate_cli_exit_code_and_report(messy_dir, synthetic_dir, capsys):
    from mmgenre.cli import main

    assert main(["validate", messy_dir, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "truncated_image" in out and "format_mismatch" in out
    assert main(["validate", synthetic_dir, "--strict"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_a_poster_is_decoded_once_per_process_until_its_file_changes(tmp_path, monkeypatch):
    from mmgenre.data import validate as validate_lib

    root = tmp_path / "once"
    (root / "posters").mkdir(parents=True)
    write_image(root / "posters/a.jpg")
    write_csv_dataset(root, [dict(id="a", title="A", genres="Drama", overview="x", split="train",
                                  poster="posters/a.jpg")])
    decoded = []
    inspect = validate_lib.inspect_poster
    monkeypatch.setattr(validate_lib, "inspect_poster",
                        lambda path, limit: decoded.append(path) or inspect(path, limit))
    for _ in range(2):
        table, report = validate(load_records(str(root)), show_progress=False)
        assert report.ok and bool(table["has_poster"][0])
    assert len(decoded) == 1  # the second validation reused the first's decode
    poster = root / "posters/a.jpg"
    poster.write_bytes(poster.read_bytes()[:40])  # cut short: another size, another file
    with pytest.warns(UserWarning, match="truncated_image"):
        table, report = validate(load_records(str(root)), show_progress=False)
    assert len(decoded) == 2 and report.counts == {"truncated_image": 1}
