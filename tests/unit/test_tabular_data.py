import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from warmstart.errors import ConfigError, DataError
from warmstart.tabular.data import bundled_path, read_table, synthetic_salaries, target_values
from warmstart.tabular.encoding import Preprocessing, extend_vocabulary, feature_columns, fit_preprocessing
from warmstart.tabular.filters import GROUPS, apply_filters, parse_filter
from warmstart.tabular.model import TabularMLP
from warmstart.tabular.split import group_ids, grouped_split


def test_bundled_data_is_the_shared_survey_file():
    data = bundled_path("salaries").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "b156e54135634169cedc91c685851450d890a05f0753a2a655895e2475e946e6"


def test_filters_select_us_and_europe_rows(survey_csv):
    df = read_table(survey_csv)
    assert len(apply_filters(df, ["company_location=US"])) == 3040
    assert len(apply_filters(df, ["company_location=@europe"])) == 447
    assert len(apply_filters(df, ["company_location=@europe", "experience_level=EN"])) == 69
    assert len(apply_filters(df, ["company_location!=US"])) == 3755 - 3040


def test_europe_group_has_32_codes_with_greece_as_gr():
    assert len(GROUPS["europe"]) == 32 and "GR" in GROUPS["europe"] and "EL" not in GROUPS["europe"]


def test_filter_errors_name_column_and_closest_values(survey_csv):
    df = read_table(survey_csv)
    with pytest.raises(DataError, match="did you mean 'company_location'"):
        apply_filters(df, ["company_locaton=US"])
    with pytest.raises(DataError, match="closest values in the data: .*US"):
        apply_filters(df, ["company_location=USA"])
    with pytest.raises(ConfigError, match="did you mean 'europe'"):
        parse_filter("company_location=@eurpe")
    with pytest.raises(ConfigError):
        parse_filter("__import__('os').system('x')")


def test_filter_values_are_data_not_code(tmp_path):
    df = pd.DataFrame({"a": ["__import__('os')", "x"], "y": ["1", "2"]})
    assert len(apply_filters(df, ["a=__import__('os')"])) == 1


def test_target_values_drop_with_counts_or_refuse_when_strict():
    df = pd.DataFrame({"y": ["100", "abc", "0", "-5", "nan", "", "7"], "x": list("abcdefg")})
    kept, y, dropped = target_values(df, "y")
    assert y.tolist() == [100.0, 7.0] and list(kept["x"]) == ["a", "g"]
    assert dropped == {"not a number": 2, "NaN or infinite": 1, "zero or negative": 2}
    with pytest.raises(DataError, match="row 2: 'abc'"):
        target_values(df, "y", strict=True)


def test_missing_target_column_suggests(survey_csv):
    with pytest.raises(DataError, match="did you mean 'salary_in_usd'"):
        target_values(read_table(survey_csv), "salary_usd")


def test_encoding_json_round_trip_reproduces_the_transform_exactly(survey_csv):
    df = apply_filters(read_table(survey_csv), ["company_location=US"])
    df, y, _ = target_values(df, "salary_in_usd")
    prep = fit_preprocessing(df, "salary_in_usd", y)
    again = Preprocessing.from_json(json.loads(json.dumps(prep.to_json())))
    a, b = prep.encode(df), again.encode(df)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(prep.encode_target(y), again.encode_target(y))
    np.testing.assert_allclose(again.decode_target(again.encode_target(y)), y, rtol=1e-6)
    assert "salary" not in prep.columns and "salary_currency" not in prep.columns


def test_alignment_report_counts_europe_titles_the_us_rows_lack(survey_csv):
    df = read_table(survey_csv)
    us, y, _ = target_values(apply_filters(df, ["company_location=US"]), "salary_in_usd")
    europe = apply_filters(df, ["company_location=@europe"])
    prep = fit_preprocessing(us, "salary_in_usd", y)
    extended, report = extend_vocabulary(prep, europe)
    titles = next(c for c in report.columns if c.column == "job_title")
    assert len(titles.new) == 11 and sum(titles.new.values()) == 17
    assert titles.new["Machine Learning Research Engineer"] == 3
    country = next(c for c in report.columns if c.column == "company_location")
    assert country.shared == 0 and sum(country.new.values()) == 447 and country.new["GB"] == 172
    # Source categories keep their indices; new ones are appended after them.
    for col, vocab in prep.categorical.items():
        assert extended.categorical[col][: len(vocab)] == vocab
    cat, _, unknown = extended.encode(europe)
    assert "company_location" not in unknown and "job_title" not in unknown


def test_unseen_category_maps_to_unknown_and_rare_to_other():
    df = pd.DataFrame({"c": ["a", "a", "b", "b", "z"], "y": ["1", "2", "3", "4", "5"]})
    prep = fit_preprocessing(df, "y", np.arange(1.0, 6.0), min_count=2)
    cat, _, unknown = prep.encode(pd.DataFrame({"c": ["a", "z", "new"]}))
    assert cat[:, 0].tolist() == [2, 1, 0] and unknown == {"c": 1}


def test_numeric_nan_is_an_error_naming_column_and_row():
    df = pd.DataFrame({"n": ["1", "2", "3"], "y": ["1", "2", "3"]})
    prep = fit_preprocessing(df, "y", np.array([1.0, 2.0, 3.0]))
    with pytest.raises(DataError, match="'n'.*row 2: 'nan'"):
        prep.encode(pd.DataFrame({"n": ["1", "nan"]}))
    with pytest.raises(DataError, match="lacks column"):
        prep.encode(pd.DataFrame({"m": ["1"]}))


def test_model_parameter_names_read_as_the_architecture():
    model = TabularMLP({"job_title": 10, "company_location": 4}, 2, hidden=(64, 64))
    names = [n for n, _ in model.named_parameters()]
    assert names == [
        "embeddings.job_title.weight", "embeddings.company_location.weight",
        "body.0.0.weight", "body.0.0.bias", "body.1.0.weight", "body.1.0.bias", "head.weight", "head.bias",
    ]
    assert model.warmstart_blocks() == [("embeddings", "body.0"), ("body.1",), ("head",)]
    again = TabularMLP.from_config(json.loads(json.dumps(model.config())))
    assert [n for n, _ in again.named_parameters()] == names


def test_extended_embeddings_keep_source_rows_and_start_new_rows_at_the_mean():
    torch.manual_seed(0)
    model = TabularMLP({"c": 5}, 0, hidden=(4,))
    old = model.embeddings["c"].weight.detach().clone()
    model.extend_embeddings_({"c": 8}, "mean")
    new = model.embeddings["c"].weight.detach()
    assert torch.equal(new[:5], old)
    torch.testing.assert_close(new[5:], old[2:].mean(0).expand(3, -1))
    assert model.source_rows == {"c": 5}


def test_grouped_split_never_puts_identical_rows_on_both_sides(survey_csv):
    df = read_table(survey_csv)
    cols = feature_columns(df, "salary_in_usd")
    groups = group_ids(df, cols)
    test, val, train = grouped_split(groups, [0.3, 0.1], seed=4)
    assert len(test) + len(val) + len(train) == len(df)
    assert not set(groups[test]) & set(groups[train]) and not set(groups[val]) & set(groups[train])
    assert abs(len(test) / len(df) - 0.3) < 0.05
    again = grouped_split(groups, [0.3, 0.1], seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((test, val, train), again))


def test_synthetic_rows_have_the_survey_columns_and_are_seeded():
    a, b = synthetic_salaries(500, seed=3), synthetic_salaries(500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(read_table("salaries").columns)
    assert set(a["experience_level"]) <= {"EN", "MI", "SE", "EX"}
    y = a["salary_in_usd"].astype(float)
    us = y[a["company_location"] == "US"].median()
    assert us > 1.5 * y[a["company_location"].isin(GROUPS["europe"])].median()
    ex, en = y[a["experience_level"] == "EX"].median(), y[a["experience_level"] == "EN"].median()
    assert ex > en


def test_numeric_values_too_large_to_standardize_are_an_error():
    df = pd.DataFrame({"n": ["1e308", "-1e308", "1e308"], "y": ["1", "2", "3"]})
    with pytest.raises(DataError, match="'n' has values too large"):
        fit_preprocessing(df, "y", np.array([1.0, 2.0, 3.0]))
