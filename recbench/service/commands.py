"""``recbench serve`` and ``recbench explain``: argument parsing and start-up (uvicorn for serve)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from recbench.errors import RecbenchError

if TYPE_CHECKING:
    from rich.console import Console


def serve_main(argv: Sequence[str]) -> int:
    """Load the run, replay its interaction log and serve it with uvicorn until interrupted."""
    from recbench.service.live import Limits

    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="recbench serve", description="Serve a trained run as an HTTP JSON service (docs at /docs)."
    )
    parser.add_argument("run_dir", help="folder of one finished run")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; only 1: the users' live histories are held in the one process",
    )
    parser.add_argument("--max-k", type=int, default=defaults.max_k, help="largest k a request may ask")
    parser.add_argument("--max-history", type=int, default=defaults.max_history, help="longest history")
    parser.add_argument("--max-exclude", type=int, default=defaults.max_exclude, help="longest exclude list")
    parser.add_argument(
        "--max-body-bytes", type=int, default=defaults.max_body_bytes, help="largest request body"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per request (default 1)")
    ns = parser.parse_args(list(argv))
    if ns.workers != 1:
        raise RecbenchError(
            f"--workers {ns.workers}: recbench serve runs one worker process, which holds the live "
            "histories and appends to the run's interaction log; run one server per run directory "
            "(several runs can be served on several ports)."
        )
    limits = Limits(ns.max_k, ns.max_history, ns.max_exclude, ns.max_body_bytes)
    for name, value in limits.__dict__.items():
        if value < 1:
            raise RecbenchError(f"--{name.replace('_', '-')} {value} must be at least 1.")
    try:
        import uvicorn
    except ImportError:
        raise RecbenchError(
            'recbench serve needs FastAPI and uvicorn: pip install "recbench[serve]" (or -e ".[serve]").'
        ) from None
    import torch

    from recbench import serving
    from recbench.service.app import create_app
    from recbench.service.live import LiveRun

    torch.set_num_threads(ns.threads)
    live = LiveRun(serving.load_run(ns.run_dir), ns.run_dir, limits)
    print(
        f"serving {type(live.model).__name__} from {ns.run_dir} on http://{ns.host}:{ns.port} "
        f"({live.n_replayed} logged events replayed)",
        flush=True,
    )
    try:
        uvicorn.run(  # no access log, no X-Forwarded-* rewriting: per-request work the service does not need
            create_app(live),
            host=ns.host,
            port=ns.port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            workers=1,
        )
    finally:
        live.log.close()
    return 0


def explain_main(argv: Sequence[str]) -> int:
    """Explain a user's top-k recommendations (or one item) from a trained run."""
    from rich.console import Console

    from recbench import serving
    from recbench.service.live import Limits, LiveRun

    parser = argparse.ArgumentParser(prog="recbench explain", description="Why an item is recommended.")
    parser.add_argument("run_dir", help="folder of one finished run")
    parser.add_argument("--user", required=True, help="raw user id, as in the dataset file")
    parser.add_argument("--item", help="raw item id (default: each of the user's top-k items)")
    parser.add_argument("--k", type=int, default=10, help="items explained, contributions shown (10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ns = parser.parse_args(list(argv))
    live = LiveRun(serving.load_run(ns.run_dir), ns.run_dir, Limits(max_k=max(ns.k, 1)), writable=False)
    try:
        if ns.item is not None:
            targets = [ns.item]
        else:
            targets = [row["item"] for row in live.recommend_user(ns.user, ns.k)]
        answers = [live.explain(ns.user, item, ns.k) for item in targets]
    except Exception as exc:
        from recbench.service.live import ServiceError

        if isinstance(exc, ServiceError):
            raise RecbenchError(f"{exc} (run {ns.run_dir}).") from None
        raise
    if ns.json:
        print(json.dumps(answers, indent=2))
        return 0
    print_explanations(Console(), answers)
    return 0


def print_explanations(console: Console, answers: Sequence[dict[str, Any]]) -> None:
    """The explanations as text and tables; ids, titles and methods are printed as plain text (see
    :mod:`recbench.reporting.plain`)."""
    from rich.table import Table

    from recbench.reporting.plain import echo, plain

    for ans in answers:
        title = f" ({ans['title']})" if "title" in ans else ""
        echo(console, (f"item {ans['item']}{title}", "bold"), f": score {ans['score']:.4f}")
        echo(console, f"method: {ans['method']}")
        if ans["baseline"]:
            echo(console, f"baseline (not from the history): {ans['baseline']:.4f}")
        table = Table()
        rows = ans["contributions"]
        cols = [c for c in ("item", "title", "users", "position", "weight") if any(c in r for r in rows)]
        for col in cols:
            table.add_column(col)
        for row in rows:
            table.add_row(*(plain(f"{row[c]:.4f}" if c == "weight" else row.get(c, "")) for c in cols))
        console.print(table)
        if ans["rest"]:
            echo(console, f"the other history items together: {ans['rest']:.4f}")
