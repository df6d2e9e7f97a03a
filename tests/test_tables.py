"""compress.tables.write_csv: the one CSV writer of the stages and the library."""
import csv
import math

import pandas as pd

from compress.tables import write_csv


def test_dict_rows_header_is_the_union_of_keys_in_first_seen_order(tmp_path):
    rows = [{"a": 1, "b": 0.1}, {"c": "x", "a": 2}, {"b": math.nan, "d": None}]
    path = write_csv(tmp_path / "sub" / "t.csv", rows)
    assert path.read_text().splitlines() == ["a,b,c,d", "1,0.1,,", "2,,x,", ",nan,,"]
    with open(path, newline="") as f:
        assert list(csv.DictReader(f))[1] == {"a": "2", "b": "", "c": "x", "d": ""}


def test_a_dataframe_is_written_as_pandas_writes_it(tmp_path):
    df = pd.DataFrame({"v": ["p", "q"], "acc": [0.98765432, math.nan], "n": [3, 4]})
    write_csv(tmp_path / "a.csv", df, float_format="%.6g")
    df.to_csv(tmp_path / "b.csv", index=False, float_format="%.6g")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_text().splitlines() == ["v,acc,n", "p,0.987654,3", "q,,4"]


def test_float_format_applies_to_float_cells_of_dict_rows(tmp_path):
    write_csv(tmp_path / "t.csv", [{"x": 1 / 3, "k": 7, "s": "1.23456789"}], float_format="%.3g")
    assert (tmp_path / "t.csv").read_text().splitlines() == ["x,k,s", "0.333,7,1.23456789"]
