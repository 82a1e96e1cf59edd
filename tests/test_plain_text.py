"""Text reaching rich is printed as plain text: brackets survive (issue 14)."""

from __future__ import annotations

import pytest
from rich.console import Console

from recbench.cli import _plain, _print_error
from recbench.errors import RecbenchError


def test_error_message_keeps_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    _print_error(RecbenchError("install it: pip install 'recbench[plot]'"))
    assert "pip install 'recbench[plot]'" in capsys.readouterr().err


def test_table_cell_keeps_brackets() -> None:
    console = Console(record=True, width=80)
    console.print(_plain("Toy Story [bold](1995)"))
    assert "Toy Story [bold](1995)" in console.export_text()


def test_train_summary_title_keeps_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from recbench.cli import _print_metrics

    _print_metrics({"test/ndcg@10": 0.5}, Path("outputs/run[plot]"))
    assert "outputs/run[plot]" in capsys.readouterr().out


def test_similar_and_recommend_tables_keep_brackets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item ids and titles from the data are printed as they are by `recbench similar` / `recommend`."""
    from types import SimpleNamespace

    import pandas as pd

    from recbench import serving
    from recbench.cli import main

    ids = SimpleNamespace(item_index=lambda raw: 0, user_index=lambda raw: 0)
    monkeypatch.setattr(serving, "load_run", lambda run_dir: SimpleNamespace(ids=ids))
    frame = pd.DataFrame(
        {"rank": [1], "item": ["i[bold]7"], "title": ["Toy Story [plot] (1995)"], "similarity": [0.5]}
    )
    monkeypatch.setattr(serving, "similar_items", lambda run, item, k: frame)
    monkeypatch.setattr(
        serving, "recommend", lambda run, users, k, history: frame.rename(columns={"similarity": "score"})
    )
    monkeypatch.setenv("COLUMNS", "200")
    for command in (["similar", "run", "--item", "x"], ["recommend", "run", "--user", "u"]):
        with pytest.raises(SystemExit) as done:
            main(command)
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "i[bold]7" in out and "Toy Story [plot] (1995)" in out


def test_explanations_keep_brackets() -> None:
    from recbench.service.commands import print_explanations

    console = Console(record=True, width=200)
    answer = {
        "item": "i[bold]1",
        "title": "Alien [Director's Cut]",
        "score": 1.0,
        "method": "item-item [cosine]",
        "baseline": 0.0,
        "contributions": [{"item": "i[2]", "title": "Heat [plot]", "weight": 0.5}],
        "rest": 0.0,
    }
    print_explanations(console, [answer])
    text = console.export_text()
    for shown in ("i[bold]1", "Alien [Director's Cut]", "item-item [cosine]", "i[2]", "Heat [plot]"):
        assert shown in text, shown
