"""A new leader reads the engine state, every instance's recent results and its peers' rows in
one snapshot (`Store.takeover_read`): a peer's batch that commits while it reads is in none of
them, so the next peer read feeds it, instead of counting it fed and missing it."""

from __future__ import annotations

from typing import Any

from factories import T0, make_result
from sqlalchemy import event

from detector.store import open_store


def test_a_peer_batch_committed_during_the_takeover_read_comes_with_the_next_peer_read(
    pg_url: str,
) -> None:
    leader, peer = open_store(pg_url), open_store(pg_url)
    try:
        peer.add_results([make_result(T0, instance="b")], written_at=T0)
        late = make_result(T0 + 1, instance="b", probe="committed-mid-read")

        def commit_a_peer_batch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            # Just before the peers' rows are read, after the windows' results were.
            if "ORDER BY probe_results.written_at" in statement and not committed:
                committed.append(True)
                peer.add_results([late], written_at=T0 + 1)  # its own connection: committed

        committed: list[bool] = []
        event.listen(leader.engine, "before_cursor_execute", commit_a_peer_batch)
        read = leader.takeover_read(T0 - 300, T0 - 120, "a")
        event.remove(leader.engine, "before_cursor_execute", commit_a_peer_batch)

        assert committed  # the batch did commit between the reads
        assert [r.probe for r in read.results] == ["dhl-label-de"]  # the windows lack it ...
        assert [row.result.probe for row in read.peers] == ["dhl-label-de"]  # ... so not fed
        fed = {row.id for row in read.peers}
        then = leader.peer_results(T0 - 120, "a", fed)
        assert [row.result for row in then] == [late]  # the next read feeds it
    finally:
        leader.close()
        peer.close()


def test_sqlite_takeover_read_holds_state_results_and_no_peers_of_its_own(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path}/one.db")
    try:
        store.add_results([make_result(T0 - 400), make_result(T0)], written_at=T0)
        read = store.takeover_read(T0 - 300, T0 - 120, "")
        assert read.state is None  # nothing saved yet
        assert [r.at for r in read.results] == [T0]
        assert read.peers == []  # every row is this instance's own
    finally:
        store.close()
