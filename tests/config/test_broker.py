"""The embedded broker's transport (config/broker.py): a worker never reads a message half written."""

from __future__ import annotations

import multiprocessing

from kombu import Connection
from kombu.transport.virtual import Empty

from config.broker import Transport

PRODUCERS = 4
EACH = 300


def _connection(folder) -> Connection:
    for name in ("queue", "processed"):
        (folder / name).mkdir(exist_ok=True)
    return Connection(
        "filesystem://",
        transport=Transport,
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        },
    )


def _produce(folder, producer: int) -> None:
    with _connection(folder) as connection:
        channel = connection.default_channel
        for n in range(EACH):
            channel._put("q", {"producer": producer, "n": n, "padding": "x" * 4000})


def test_messages_written_while_a_worker_polls_arrive_whole_and_once(tmp_path):
    # given: four processes writing messages while this one takes them as fast as it can
    ctx = multiprocessing.get_context("spawn")
    producers = [ctx.Process(target=_produce, args=(tmp_path, p)) for p in range(PRODUCERS)]
    for process in producers:
        process.start()
    received = []
    with _connection(tmp_path) as connection:
        channel = connection.default_channel
        # when: it polls until every producer is done and the folder is empty
        while any(p.is_alive() for p in producers) or len(received) < PRODUCERS * EACH:
            try:
                received.append(channel._get("q"))
            except Empty:
                if not any(p.is_alive() for p in producers) and len(received) < PRODUCERS * EACH:
                    break
    for process in producers:
        process.join(timeout=60)
    # then: every message arrived once, whole (an empty or partial file would not parse)
    assert sorted((m["producer"], m["n"]) for m in received) == [(p, n) for p in range(PRODUCERS) for n in range(EACH)]
    assert all(len(m["padding"]) == 4000 for m in received)
    assert not list((tmp_path / "processed").iterdir())
