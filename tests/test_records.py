import os

import pytest
from conftest import write_csv_dataset

from mmgenre.data.records import DataError, load_records


def test_csv_layout_loads_with_paths_relative_to_csv(synthetic_dir):
    table = load_records(synthetic_dir)
    assert len(table) == 240
    assert set(table["split"]) == {"train", "dev", "test"}
    assert all(isinstance(g, list) and g for g in table["genres"])
    assert table["poster"].iloc[0].startswith(str(synthetic_dir))


def test_missing_columns_name_the_file_and_columns(tmp_path):
    (tmp_path / "movies.csv").write_text("id,genres,split\ntt1,Drama,train\n")
    with pytest.raises(DataError, match=r"movies.csv: missing required column\(s\) \['overview', 'poster'\]"):
        load_records(str(tmp_path))


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not a dataset folder"):
        load_records(str(tmp_path))


def test_mmimdb_layout_loads(mmimdb_dir):
    table = load_records(mmimdb_dir)
    assert len(table) == 6
    row = table.set_index("id").loc["0000002"]
    assert row["genres"] == ["Comedy", "Drama", "Film-Noir"]
    assert row["overview"] == "plot number 1 about things"  # first of the plot list
    assert row["split"] == "train" and row["poster"].endswith("0000002.jpeg")


def test_user_csv_file_path_loads(tmp_path):
    path = write_csv_dataset(tmp_path, [{"id": "a", "title": "A", "genres": "Drama|Comedy",
                                         "overview": "x", "poster": "a.jpg", "split": "TRAIN "}])
    table = load_records(str(tmp_path / "movies.csv"))
    assert table["split"].tolist() == ["train"] and table["genres"][0] == ["Drama", "Comedy"]
    assert path == str(tmp_path)


def test_files_outside_the_dataset_are_never_read(tmp_path):
    from conftest import write_image

    from mmgenre.data.validate import validate

    secret = write_image(tmp_path / "outside.jpg")
    root = tmp_path / "data"
    (root / "posters").mkdir(parents=True)
    write_image(root / "posters" / "ok.jpg")
    os.symlink(secret, root / "posters" / "link.jpg")
    os.symlink(root / "posters" / "ok.jpg", root / "posters" / "inner.jpg")  # stays inside: fine
    posters = ["../outside.jpg", str(secret), "posters/link.jpg", "posters/inner.jpg", "posters/ok.jpg"]
    write_csv_dataset(root, [{"id": f"m{i}", "title": "t", "genres": "Drama", "overview": "words",
                              "poster": p, "split": "train"} for i, p in enumerate(posters)])
    table, report = validate(load_records(str(root)), show_progress=False)
    assert report.counts["poster_outside_dataset"] == 3
    assert table["has_poster"].tolist() == [False, False, False, True, True]
    assert table["has_overview"].all()  # the movie stays usable for text models
    # The explicit switch reads them.
    table, report = validate(load_records(str(root), allow_outside=True), show_progress=False)
    assert table["has_poster"].all() and not report.counts


def test_mmimdb_ids_and_metadata_of_the_wrong_kind_are_per_row_problems(mmimdb_dir, tmp_path):
    import json

    from mmgenre.data.validate import validate

    root = tmp_path / "mmimdb"
    (tmp_path / "x.json").write_text(json.dumps({"genres": ["Drama"], "plot": ["outside"]}))
    meta = {"0000001": [1, 2], "0000002": None, "0000003": {"genres": "Drama", "plot": ["p"]},
            "0000004": {"genres": ["Horror"], "plot": 42}, "0000005": {"genres": ["Drama"], "plot": {"a": 1}}}
    for movie_id, value in meta.items():
        (root / "dataset" / f"{movie_id}.json").write_text(json.dumps(value))
    splits = json.loads((root / "split.json").read_text())
    splits["train"] += ["../../x", "0000099"]
    (root / "split.json").write_text(json.dumps(splits))
    table, report = validate(load_records(str(root)), show_progress=False)
    assert dict(report.counts) == {"bad_metadata": 3, "outside_dataset": 1, "missing_metadata": 1,
                                   "missing_overview": 2}
    assert sorted(table["id"]) == ["0000004", "0000005", "0000006"]
    assert table.set_index("id").loc["0000004", "genres"] == ["Horror"]
    (root / "split.json").write_text(json.dumps({"train": 5}))
    with pytest.raises(DataError, match="split.json: expected a mapping of split name to a list"):
        load_records(str(root))


def test_an_overview_of_invisible_characters_is_empty(tmp_path):
    write_csv_dataset(tmp_path, [{"id": "a", "title": "A", "genres": "Drama",
                                  "overview": "\u200b\u200b \ufeff", "poster": "", "split": "train"}])
    assert load_records(str(tmp_path))["overview"][0] is None


def test_a_header_only_csv_is_a_clear_error(tmp_path):
    (tmp_path / "movies.csv").write_text("id,title,genres,overview,poster,split\n")
    with pytest.raises(DataError, match="lists no movies"):
        load_records(str(tmp_path))


def test_data_limit_applies_before_posters_are_checked(synthetic_dir):
    from conftest import tiny_config

    from mmgenre.data.prepare import prepare_data
    from mmgenre.models import registry

    cfg = tiny_config(synthetic_dir, "cnn", data={"limit": 10})
    prepared = prepare_data(cfg.data, registry.get("cnn"), show_progress=False)
    assert prepared.report.total == 30  # 10 per split were read and checked, not 240
    assert all(len(rows) <= 10 for rows, _ in prepared.splits.values())


def test_mmimdb_layout_follows_the_published_protocol_by_default(mmimdb_dir, tmp_path):
    import json

    import pandas as pd
    from conftest import tiny_config

    from mmgenre.data.labels import GenreVocabulary
    from mmgenre.data.prepare import prepare_data
    from mmgenre.models import registry

    path = os.path.join(mmimdb_dir, "dataset", "0000001.json")
    meta = json.load(open(path))
    meta["plot"] = ["short one", "the longest plot summary of this movie by far", "mid plot"]
    json.dump(meta, open(path, "w"))
    spec = registry.get("lstm")
    published = prepare_data(tiny_config(mmimdb_dir, "lstm").data, spec, show_progress=False)
    train = published.splits["train"][0].set_index("id")
    assert train.loc["0000001", "overview"] == "the longest plot summary of this movie by far"
    # Every train genre up to 23 (Film-Noir has one movie), not min_genre_count's.
    assert "Film-Noir" in published.vocab.genres
    first = prepare_data(tiny_config(mmimdb_dir, "lstm", data={"protocol": "min_count",
                                                               "min_genre_count": 2}).data,
                         spec, show_progress=False)
    assert first.splits["train"][0].set_index("id").loc["0000001", "overview"] == "short one"
    assert "Film-Noir" not in first.vocab.genres
    # The 23 most frequent train genres, ties by name; the rest are recorded as dropped.
    table = pd.DataFrame({"split": ["train"] * 30,
                          "genres": [[f"g{i:02d}"] * 1 for i in range(25)] + [["g00"]] * 5})
    vocab = GenreVocabulary.from_train(table, 1, top=23)
    assert vocab.genres[0] == "g00" and len(vocab.genres) == 23
    assert vocab.dropped == {"g23": "not among the 23 most frequent train genres",
                             "g24": "not among the 23 most frequent train genres"}
