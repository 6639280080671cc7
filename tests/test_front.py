"""Reading a Pareto front back: knee point, best under budgets, filters, errors."""

import pandas as pd
import pytest

from moga.front import annotate, filter_front, format_front, knee_index, read_front
from supernet import UserError


def toy_front() -> pd.DataFrame:
    # accuracy saturates with latency: the knee is at latency 3 (accuracy 80)
    lat = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    acc = [40.0, 65.0, 80.0, 83.0, 85.0, 86.0]
    return pd.DataFrame({"id": range(6), "arch": [f"a{i}" for i in range(6)], "accuracy": acc, "latency_ms": lat,
                         "params": [4e6 + i * 1e5 for i in range(6)], "macs": [2e8] * 6})  # fmt: skip


def test_knee_by_hand():
    assert knee_index(toy_front(), "latency_ms") == 2


def test_best_under_budgets_and_marks():
    front, budgets = annotate(toy_front(), [2.5, 4.0, 0.5])
    assert budgets == [2.5, 4.0, 0.5]
    assert front.loc[1, "mark"] == "best<=2.5"
    assert front.loc[3, "mark"] == "best<=4"
    assert front.loc[2, "mark"] == "knee"
    assert "best<=0.5" not in " ".join(front["mark"])


def test_filters_and_sort():
    front = filter_front(toy_front(), max_latency=4.0, min_accuracy=60.0, sort="accuracy")
    assert list(front["id"]) == [3, 2, 1]
    with pytest.raises(UserError, match="cannot sort by 'speed'"):
        filter_front(toy_front(), None, None, "speed")
    text = format_front(annotate(front)[0])
    assert "a3" in text and "4.10M" in text


def test_read_front_paths_and_errors(tmp_path):
    (tmp_path / "search").mkdir()
    toy_front().to_csv(tmp_path / "search" / "pareto.csv", index=False)
    assert len(read_front(tmp_path)) == 6
    assert len(read_front(tmp_path / "search" / "pareto.csv")) == 6
    with pytest.raises(UserError, match=r"no pareto\.csv"):
        read_front(tmp_path / "nowhere")
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(UserError, match=r"missing columns"):
        read_front(bad)


def test_regret_summary_separates_the_accuracy_latency_front():
    from moga.front import regret_summary, two_d_front

    # rows 0, 1 and 3 trade accuracy for latency; row 2 is on a 3-objective front only for its parameters
    front = pd.DataFrame(
        {
            "id": [0, 1, 2, 3],
            "accuracy": [30.0, 40.0, 35.0, 45.0],
            "latency_ms": [1.0, 2.0, 2.5, 3.0],
            "params": [1e6, 2e6, 9e6, 3e6],
            "true_accuracy": [80.0, 90.0, 70.0, 91.0],
            "regret": [0.0, 0.5, 20.0, 1.0],
            "mark": ["", "knee", "", ""],
        }
    )
    assert two_d_front(front, "latency_ms") == [0, 1, 3]
    line = regret_summary(front)
    assert line.startswith("ground truth: median regret 0.75 pp over 4 models (0.50 pp over the 3 on the accuracy-latency front)")
    assert "knee (id 1) 0.50 pp at true accuracy 90.00 %" in line
