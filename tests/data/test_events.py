"""The interaction log: durable appends, replay, torn lines, concurrency, folding into a dataset."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recbench.data.events import EventLog, add_events, read_events
from recbench.data.interactions import IdMaps, Interactions
from recbench.errors import DataError


def test_append_then_reopen_replays_in_order(tmp_path) -> None:
    log = EventLog(tmp_path / "log.jsonl")
    first = log.append("u1", "i1", 10)
    second = log.append("u2", "i3", 11, rating=4.0)
    log.close()
    again = EventLog(tmp_path / "log.jsonl")
    assert again.replayed == [first, second]
    assert again.append("u1", "i2", 12).seq == 3


def test_torn_last_line_is_cut_off(tmp_path) -> None:
    path = tmp_path / "log.jsonl"
    log = EventLog(path)
    log.append("u1", "i1", 1)
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"seq":2,"user":"u')  # a write interrupted by a crash
    reopened = EventLog(path)
    assert [e.seq for e in reopened.replayed] == [1]
    reopened.append("u2", "i2", 2)
    reopened.close()
    assert [e.user for e in read_events(path)] == ["u1", "u2"]


def test_concurrent_appends_each_land_exactly_once(tmp_path) -> None:
    log = EventLog(tmp_path / "log.jsonl")
    acked: list[int] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for j in range(25):
            seq = log.append(f"u{w}", f"i{j}", j).seq
            with lock:
                acked.append(seq)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    seqs = [e.seq for e in read_events(tmp_path / "log.jsonl")]
    assert seqs == list(range(1, 101)) and sorted(acked) == seqs


def test_malformed_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"seq":1,"user":"a","item":"b","timestamp":1}\nnot json\n')
    with pytest.raises(DataError, match=r"log.jsonl, line 2"):
        read_events(path)


def test_add_events_extends_users_and_refuses_unknown_items(tmp_path) -> None:
    data = Interactions(
        np.array([0, 1]), np.array([0, 1]), 2, 3, ratings=np.array([3.0, 5.0]), timestamps=np.array([1, 2])
    )
    ids = IdMaps(users=np.array([10, 11]), items=np.array([100, 101, 102]))
    log = EventLog(tmp_path / "log.jsonl")
    log.append("11", "102", 5)
    log.append("new", "100", 6, rating=2.0)
    grown, grown_ids = add_events(data, ids, read_events(tmp_path / "log.jsonl"))
    assert grown.n_users == 3 and grown_ids.user_index("new") == 2
    assert grown.users.tolist() == [0, 1, 1, 2] and grown.items.tolist() == [0, 1, 2, 0]
    assert grown.ratings.tolist() == [3.0, 5.0, 5.0, 2.0]  # no rating: the top of the data's scale
    log.append("10", "100", 8, rating=1.0)  # repeats user 10's pair: replaces the older row
    again, _ = add_events(data, ids, read_events(tmp_path / "log.jsonl"))
    assert len(again) == 4 and again.ratings[(again.users == 0) & (again.items == 0)].tolist() == [1.0]
    log.append("11", "999", 7)
    with pytest.raises(DataError, match="999"):
        add_events(data, ids, read_events(tmp_path / "log.jsonl"))
