"""``recbench serve`` end to end: the real uvicorn server on a free 127.0.0.1 port, every endpoint, the
bad inputs, events that count at once, SIGKILL + restart, and folding the log into the next training."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recbench.data.events import LOG_FILE, read_events
from recbench.errors import RecbenchError
from recbench.pipeline import RunContext, run

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]


def train(tmp: Path, name: str, *overrides: str) -> Path:
    """A finished tiny run in ``tmp/name`` with the config file the loader reads."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "configs")):
        cfg = compose(
            "train",
            overrides=[
                "dataset=tiny",
                "trainer=fast",
                "split=loo",
                f"paths.cache_dir={tmp / 'cache'}",
                *overrides,
            ],
        )
    out = tmp / name
    run(cfg, RunContext(out, {}))
    (out / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m recbench serve RUN_DIR`` in a subprocess, on a free local port."""

    def __init__(self, run_dir: Path, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recbench", "serve", str(run_dir), "--port", str(self.port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stdout.read().decode())
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def itemknn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("serve"), "itemknn", "model=itemknn")


def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]
    assert isinstance(message, str) and "\n" not in message and message
    return message


@pytest.mark.slow
def test_every_endpoint_and_the_bad_inputs(itemknn_run: Path) -> None:
    from recbench import serving

    loaded = serving.load_run(itemknn_run)
    raw_users, raw_items = loaded.ids.users, loaded.ids.items
    user = str(raw_users[0])
    seen = {str(raw_items[i]) for i in loaded.data.items[loaded.data.users == 0]}
    server = Server(itemknn_run, "--max-history", "20", "--max-body-bytes", "4000", "--max-k", "30")
    try:
        c = httpx.Client(base_url=server.url, timeout=10)
        meta = c.get("/metadata").json()
        assert meta["model"] == "ItemKNN" and meta["n_items"] == loaded.data.n_items
        assert c.get("/openapi.json").status_code == 200

        recs = c.get("/recommend", params={"user": user, "k": 5}).json()["items"]
        assert len(recs) == 5 and not {str(r["item"]) for r in recs} & seen
        want = serving.recommend(loaded, np.array([0]), k=5)
        assert [str(r["item"]) for r in recs] == [str(i) for i in want["item"]]

        history = [str(raw_items[i]) for i in (1, 2, 3)]
        sess = c.post("/recommend", json={"history": history, "k": 4, "exclude": [str(raw_items[9])]})
        got = [str(r["item"]) for r in sess.json()["items"]]
        assert len(got) == 4 and not set(got) & {*history, str(raw_items[9])}

        # a new event counts at once: the item leaves the user's recommendations
        top = str(recs[0]["item"])
        ack = c.post("/interactions", json={"user": user, "item": top, "timestamp": 10**10}).json()
        assert ack["seq"] == 1
        after = [str(r["item"]) for r in c.get("/recommend", params={"user": user, "k": 5}).json()["items"]]
        assert top not in after
        # an unseen user with events gets recommendations from them
        c.post("/interactions", json={"user": "brand-new", "item": history[0]})
        assert c.get("/recommend", params={"user": "brand-new", "k": 3}).json()["items"]

        sim = c.get("/similar", params={"item": history[0], "k": 3}).json()["items"]
        assert len(sim) == 3 and history[0] not in {str(r["item"]) for r in sim}
        exp = c.get("/explain", params={"user": user}).json()
        assert exp["exact"] and exp["method"]
        shown = sum(r["weight"] for r in exp["contributions"])
        assert shown + exp["rest"] + exp["baseline"] == pytest.approx(exp["score"], rel=1e-4)
        sess_exp = c.post("/explain", json={"history": history, "k": 2}).json()
        assert sess_exp["item"] == sess.json()["items"][0]["item"] and len(sess_exp["contributions"]) <= 2
        assert "empty" in _error(c.post("/explain", json={"history": []}), 422)
        assert c.get("/health").json() == {"status": "ok"}

        # bad input: a one-line 4xx, never a 500
        assert "unknown user" in _error(c.get("/recommend", params={"user": "nobody"}), 404)
        assert "k=0" in _error(c.get("/recommend", params={"user": user, "k": 0}), 422)
        assert "k=31" in _error(c.get("/recommend", params={"user": user, "k": 31}), 422)
        _error(c.get("/recommend", params={"user": user, "k": "ten"}), 422)
        _error(c.get("/recommend"), 422)
        assert "empty" in _error(c.post("/recommend", json={"history": []}), 422)
        long = [str(raw_items[i % 10]) for i in range(21)]
        assert "max_history=20" in _error(c.post("/recommend", json={"history": long}), 422)
        assert "'nope'" in _error(c.post("/recommend", json={"history": [history[0], "nope"]}), 404)
        assert "'nope'" in _error(c.post("/recommend", json={"history": history, "exclude": ["nope"]}), 404)
        bad_json = c.post(
            "/recommend", content=b'{"history": [1, 2', headers={"content-type": "application/json"}
        )
        _error(bad_json, 422)
        _error(c.post("/recommend", json={"history": history, "colour": "red"}), 422)
        _error(c.post("/recommend", json={"history": "1,2"}), 422)
        _error(c.post("/recommend", json={"history": history, "ratings": [1.0]}), 422)
        big = {"history": history, "exclude": ["x" * 50] * 100}
        assert "max_body_bytes=4000" in _error(c.post("/recommend", json=big), 413)

        def chunked() -> Iterator[bytes]:  # no Content-Length: the body is counted while it is read
            yield b'{"history": ['
            yield b'"x",' * 1200
            yield b'"1"]}'

        js = {"content-type": "application/json"}
        assert "max_body_bytes=4000" in _error(c.post("/recommend", content=chunked(), headers=js), 413)
        assert "'nope'" in _error(c.post("/interactions", json={"user": user, "item": "nope"}), 404)
        _error(c.post("/interactions", json={"item": history[0]}), 422)
        _error(c.get("/similar", params={"item": "nope"}), 404)
        _error(c.get("/explain", params={"user": user, "item": "nope"}), 404)
        _error(c.get("/explain", params={"user": "nobody"}), 404)
        assert c.get("/health").status_code == 200  # still up
    finally:
        server.stop()
    events = read_events(itemknn_run / LOG_FILE)
    assert [(e.user, e.item) for e in events] == [(user, top), ("brand-new", history[0])]


def test_the_fast_path_answers_exactly_as_the_fastapi_routes(itemknn_run: Path) -> None:
    """Well-formed GET/POST /recommend requests are answered by HotRoutes, everything else by FastAPI;
    both give the same status and bytes, and the requests HotRoutes passes on still get FastAPI's 422."""
    import asyncio

    from recbench import serving
    from recbench.service.app import create_app
    from recbench.service.fastpath import HotRoutes, session_body, user_query
    from recbench.service.live import LiveRun

    live = LiveRun(serving.load_run(itemknn_run), itemknn_run, writable=False)
    outer = create_app(live)
    assert isinstance(outer.app, HotRoutes)
    inner = outer.app.app  # the FastAPI app behind it
    user, items = str(live.run.ids.users[2]), [str(i) for i in live.run.ids.items[:6]]
    js = {"content-type": "application/json"}
    well_formed = [
        ("GET", f"/recommend?user={user}&k=5", None),
        ("GET", f"/recommend?user={user}", None),
        ("GET", "/recommend?user=nobody&k=3", None),  # 404 from the live run, on both paths
        ("GET", f"/recommend?user={user}&k=0", None),  # 422 from the live run
        ("POST", "/recommend", {"history": items[:3], "k": 4}),
        ("POST", "/recommend", {"history": [int(items[0]), items[1]], "exclude": [items[4]], "k": 3}),
        ("POST", "/recommend", {"history": [items[0], "nope"]}),
        ("POST", "/recommend", {"history": []}),
    ]
    passed_on = [
        ("GET", f"/recommend?user={user}&k=ten", None),
        ("GET", "/recommend?k=5", None),
        ("POST", "/recommend", {"history": items[:2], "colour": "red"}),
        ("POST", "/recommend", {"history": "1,2"}),
        ("POST", "/recommend", {"history": items[:2], "k": True}),  # pydantic reads k=1: a 200
        ("POST", "/recommend", {"history": items[:2], "ratings": ["high", 2]}),
        ("POST", "/recommend", b'{"history": [1, 2'),
    ]

    async def answers(method: str, url: str, body: object) -> list[tuple[int, bytes]]:
        out = []
        for app in (outer, inner):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                if isinstance(body, bytes):
                    resp = await client.request(method, url, content=body, headers=js)
                else:
                    resp = await client.request(method, url, json=body)
            out.append((resp.status_code, resp.content))
        return out

    for method, url, body in well_formed:
        if method == "GET":
            assert user_query(url.split("?", 1)[1].encode()) is not None
        else:
            assert session_body(json.dumps(body).encode()) is not None
        fast, framework = asyncio.run(answers(method, url, body))
        assert fast == framework, (url, body)
    for method, url, body in passed_on:
        if method == "GET":
            assert user_query(url.split("?", 1)[1].encode()) is None
        else:
            assert session_body(body if isinstance(body, bytes) else json.dumps(body).encode()) is None
        fast, framework = asyncio.run(answers(method, url, body))
        assert fast == framework and fast[0] == (200 if body == {"history": items[:2], "k": True} else 422)
    assert user_query(b"user=1&user=2") is None  # a repeated parameter: FastAPI decides


@pytest.mark.slow
def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path, itemknn_run: Path) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(itemknn_run, run_dir, ignore=shutil.ignore_patterns(LOG_FILE))
    from recbench import serving

    loaded = serving.load_run(run_dir)
    users = [str(u) for u in loaded.ids.users[:6]]
    items = [str(i) for i in loaded.ids.items]
    server = Server(run_dir)
    acked: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for j in range(15):
                user, item = users[(w + j) % len(users)], items[(7 * w + j) % len(items)]
                resp = c.post("/interactions", json={"user": user, "item": item, "timestamp": j})
                if resp.status_code == 200:
                    with lock:
                        acked.append((resp.json()["seq"], user, item))
                c.get("/recommend", params={"user": users[j % len(users)], "k": 5})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        before = {u: c.get("/recommend", params={"user": u, "k": 10}).json()["items"] for u in users}
    server.stop(signal.SIGKILL)

    logged = [(e.seq, e.user, e.item) for e in read_events(run_dir / LOG_FILE)]
    assert len(acked) == 60 and sorted(acked) == logged  # every acknowledged event, exactly once

    server = Server(run_dir)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            after = {u: c.get("/recommend", params={"user": u, "k": 10}).json()["items"] for u in users}
            assert c.get("/metadata").json()["n_logged_events"] == 60
    finally:
        server.stop()
    assert after == before


def test_sessions_for_sequence_models_refusals_and_offline_fold_in(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from recbench import serving
    from recbench.service.live import LiveRun, ServiceError

    sas = train(tmp_path, "sasrec", "model=sasrec", "model.max_len=10", "model.hidden_dim=8")
    live = LiveRun(serving.load_run(sas), sas)
    items = [str(i) for i in live.run.ids.items[:12]]
    recs = live.recommend_session(items, 5, [], None)
    assert len(recs) == 5 and not {str(r["item"]) for r in recs} & set(items)
    exp = live.explain(str(live.run.ids.users[0]), None, 5)
    assert "attention" in exp["method"]
    made_up = live.explain_session(items, None, 5, None)
    assert made_up["item"] == recs[0]["item"] and len(made_up["contributions"]) == 5

    # the CLI: recbench explain (JSON), and serve's refusals before anything starts
    from recbench.cli import main
    from recbench.service.commands import serve_main

    with pytest.raises(SystemExit) as done:
        main(["explain", str(sas), "--user", str(live.run.ids.users[1]), "--k", "2", "--json"])
    assert done.value.code == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 2 and all("attention" in e["method"] for e in shown)
    with pytest.raises(RecbenchError, match="one worker"):
        serve_main([str(sas), "--workers", "2"])
    with pytest.raises(RecbenchError, match="--max-k 0"):
        serve_main([str(sas), "--max-k", "0"])

    gmf = train(tmp_path, "gmf", "model=gmf")
    refused = LiveRun(serving.load_run(gmf), gmf)
    with pytest.raises(ServiceError, match="models that can: .*itemknn.*sasrec") as info:
        refused.recommend_session(items[:3], 5, [], None)
    assert info.value.status == 422
    # refusals follow the declared capabilities (GMF: no history, no explain), before any work
    assert not refused.capabilities.history and not refused.capabilities.explain
    refused.add_event("new-visitor", items[0], 10**10, None)
    with pytest.raises(ServiceError, match="not in the training data.; models that can: .*itemknn"):
        refused.recommend_user("new-visitor", 5)
    for call in (
        lambda: refused.explain("new-visitor", None, 5),
        lambda: refused.explain_session(items, None, 5, None),
    ):
        with pytest.raises(ServiceError, match="cannot explain .*models that can: .*userknn") as info:
            call()
        assert info.value.status == 422
    refused.log.close()

    # the log folds into the next offline training
    user = str(live.run.ids.users[0])
    live.add_event(user, items[0], 10**10, None)
    live.add_event("someone-new", items[1], 10**10, None)
    live.log.close()
    base = live.run.data
    pairs = {(int(u), int(i)) for u, i in zip(base.users, base.items)}
    grown = train(tmp_path, "again", "model=pop", f"extra_interactions={sas / LOG_FILE}")
    stats = json.loads((grown / "metrics.json").read_text())["extra"]["dataset"]
    new_pair = (0, int(live.items[items[0]])) not in pairs
    assert stats["n_users"] == base.n_users + 1
    assert stats["n_interactions"] == len(base) + 1 + int(new_pair)
