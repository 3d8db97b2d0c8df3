import numpy as np
import pandas as pd
import pytest

from mmgenre import tasks
from mmgenre.data.labels import GenreVocabulary


def _table():
    return pd.DataFrame({
        "split": ["train"] * 5 + ["test"] * 2,
        "genres": [["Drama", "Comedy"], ["Drama"], ["Drama", "Horror"], ["Comedy"], ["Drama"],
                   ["Western", "Horror"], ["Horror"]],
    })


def test_vocabulary_uses_train_only_and_records_dropped():
    vocab = GenreVocabulary.from_train(_table(), min_count=2)
    assert vocab.genres == ["Drama", "Comedy"]  # Horror has 1 train example; test rows ignored
    assert vocab.dropped == {"Horror": "1 train example(s) < min_genre_count 2"}
    assert vocab.unseen(_table()[_table()["split"] == "test"]) == {"Western": 1, "Horror": 2}


def test_multi_hot_and_single_label_rules():
    table = _table()
    vocab = GenreVocabulary.from_train(table, min_count=1)
    assert vocab.genres == ["Drama", "Comedy", "Horror"]
    np.testing.assert_array_equal(vocab.multi_hot([["Comedy", "Western"]]), [[0, 1, 0]])
    # rarest: Drama|Horror -> Horror (1 train example); first: -> Drama
    assert vocab.single_label([["Drama", "Horror"], ["Western"]], "rarest").tolist() == [2, -1]
    assert vocab.single_label([["Drama", "Horror"]], "first").tolist() == [0]
    single = tasks.get("single")
    one_hot = single.targets(vocab, table.head(3))
    assert one_hot.sum(axis=1).tolist() == [1, 1, 1]
    assert single.labelled(single.targets(vocab, pd.DataFrame({"genres": [["Western"]]}))).tolist() == [False]


def test_the_decision_rule_is_the_tasks_and_predict_shows_what_it_decided():
    """Multi-label: probability >= threshold (0.5049 against 0.5051 is not predicted, and the
    display says why); single-label: the top genre only, no invented thresholds."""
    from mmgenre.inference import _distinct

    probs = np.array([[0.5049, 0.5051, 0.2]])
    on = tasks.get("multilabel").decide(probs, [0.5051, 0.5051, 0.1])
    assert on.tolist() == [[False, True, True]]
    assert _distinct(0.5049, 0.5051) == ("0.5049", "0.5051")
    assert _distinct(0.7, 0.5) == ("0.700", "0.500")
    assert tasks.get("single").decide(probs).tolist() == [[False, True, False]]
    assert _distinct(0.5051, None) == ("0.505", "top genre")
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.get("ordinal")


def test_no_genre_left_is_a_clear_error():
    with pytest.raises(ValueError, match="no genre has at least 50 train examples"):
        GenreVocabulary.from_train(_table(), min_count=50)


def test_genre_spellings_merge_to_the_most_common_one_and_are_reported():
    import pandas as pd

    from mmgenre.data.labels import normalise_genres

    table = pd.DataFrame({"genres": [["Drama"], ["drama", " DRAMA"], ["Drama"], ["Science  Fiction"],
                                     ["science fiction"], ["Science Fiction"]]})
    table, merged = normalise_genres(table)
    assert table["genres"].tolist() == [["Drama"], ["Drama"], ["Drama"], ["Science Fiction"],
                                        ["Science Fiction"], ["Science Fiction"]]
    assert merged == {"Drama": [" DRAMA", "Drama", "drama"],
                      "Science Fiction": ["Science  Fiction", "Science Fiction", "science fiction"]}
    # A trained run's spelling wins on new data.
    table, _ = normalise_genres(pd.DataFrame({"genres": [["DRAMA"]]}), known=["Drama"])
    assert table["genres"].tolist() == [["Drama"]]


def test_other_catalogues_genre_spellings_map_onto_the_run_with_counts():
    from mmgenre import genres

    run = ["Drama", "Comedy", "Science Fiction", "Family", "Music", "TV Movie"]
    table = pd.DataFrame({"genres": [["Sci-Fi", "drama"], ["Children", "Film-Noir"],
                                     ["(no genres listed)"], ["Musical", "Music"], ["TV-Movie", "IMAX"],
                                     ["science  fiction", "Biography"]]})
    mapped, mapping = genres.map_onto(table, run)
    assert mapped["genres"].tolist() == [["Science Fiction", "Drama"], ["Family"], [], ["Music"],
                                         ["TV Movie"], ["Science Fiction"]]
    assert mapping.renamed == {"Children": "Family", "Musical": "Music", "Sci-Fi": "Science Fiction",
                               "TV-Movie": "TV Movie", "drama": "Drama",
                               "science  fiction": "Science Fiction"}
    assert mapping.ignored == {"Film-Noir": 1, "IMAX": 1, "Biography": 1}
    assert mapping.shared == ["Drama", "Science Fiction", "Family", "Music", "TV Movie"]
    # A run that learned both keeps IMDb's Music and Musical apart.
    both, _ = genres.map_onto(table.iloc[[3]], ["Music", "Musical"])
    assert both["genres"].tolist() == [["Musical", "Music"]]
    # The user's map comes first; "A=" ignores A; a target the run lacks is refused.
    overrides = genres.parse_genre_map(["Film-Noir=Drama", "Sci-Fi="])
    mapped, mapping = genres.map_onto(table, run, overrides)
    assert mapped["genres"][0] == ["Drama"] and mapped["genres"][1] == ["Family", "Drama"]
    with pytest.raises(genres.GenreMapError, match="the run has no genre 'Noir'"):
        genres.map_onto(table, run, {"Film-Noir": "Noir"})
    with pytest.raises(genres.GenreMapError, match="neither A=B nor an existing file"):
        genres.parse_genre_map(["Film-Noir"])
