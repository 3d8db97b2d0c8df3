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
