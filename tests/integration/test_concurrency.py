"""Two gateway processes on one database: no packet delivered twice, none lost.

Both gateways (each with two gunicorn workers) take the same traffic at once: the same packet sent many
times through both (it must be stored once and get one docId), distinct packets, and receivers fetching
and acknowledging through either gateway.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from gateway.config import Config
from lienthong_client import LienthongClient
from tests.support.packets import new_document
from tests.support.world import G22, H41, H49, World


def test_two_gateways_one_database(world: World, tmp_path):
    from gateway.launcher import GatewayProcess

    second = GatewayProcess(
        tmp_path,
        database_url=world.database_url,
        workers=2,
        env={"LIENTHONG_TRUST_ANCHORS": str(world.trust_file)},
    ).start()
    try:
        urls = [world.url, second.url]

        def client(system: str, i: int) -> LienthongClient:
            return LienthongClient(urls[i % 2], system, world.secrets[system], timeout=60)

        same = world.seal(new_document(G22, [H41, H49]), G22)
        distinct = [world.seal(new_document(G22, [H41, H49]), G22) for _ in range(20)]
        jobs = [(i, same) for i in range(16)] + [(i, d) for i, d in enumerate(distinct)]

        def send(job):
            i, packet = job
            return packet, client("vpcp", i).send(packet)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(send, jobs))

        same_ids = {r.docId for p, r in results if p == same}
        assert len(same_ids) == 1, "the same packet got several docIds"
        assert sum(1 for p, r in results if p == same and not r.duplicate) == 1
        distinct_ids = {r.docId for p, r in results if p != same}
        assert len(distinct_ids) == len(distinct)
        all_ids = same_ids | distinct_ids

        # a recipient's queue is in the order the packets were accepted (committed), even though they were
        # sent at once through two gateways: the acceptance times along the queue never go back
        for system in ("nghean", "quangninh"):
            queue = [i for i in client(system, 0).inbox("edoc") if i.docId in all_ids]
            assert len(queue) == len(all_ids)
            times = [i.createdAt for i in queue]
            assert times == sorted(times), f"{system}'s queue is not in acceptance order"

        # each recipient drains its inbox through both gateways at once
        def drain(args):
            system, i = args
            c = client(system, i)
            got = []
            for item in c.inbox("edoc"):
                if item.docId in all_ids:
                    c.fetch(item.docId)
                    c.ack(item.docId, "done")
                    got.append(item.docId)
            return system, got

        with ThreadPoolExecutor(max_workers=4) as pool:
            drained = list(
                pool.map(drain, [("nghean", 0), ("nghean", 1), ("quangninh", 0), ("quangninh", 1)])
            )
        for system in ("nghean", "quangninh"):
            seen = [d for s, got in drained if s == system for d in got]
            assert set(seen) == all_ids, f"{system} lost packets"
            assert not [d for d in all_ids if d in {i.docId for i in client(system, 0).inbox("edoc")}]

        rows = [r for r in client("vpcp", 0).sent(limit=1000) if r.docId in all_ids]
        assert len(rows) == 2 * len(all_ids), "one delivery per recipient per packet"
        assert {r.transportState for r in rows} == {"done"}
        assert len({(r.docId, r.recipient) for r in rows}) == len(rows)

        # both gateways appended to one audit chain at once: it is whole, one entry per event, no fork
        from gateway import evidence
        from gateway.keystore import load_document_signer

        signer = load_document_signer(
            Config.from_sources({}, data_dir=world.data_dir, database_url=world.database_url)
        )
        with world.db.unit_of_work() as session:
            report = evidence.verify_database(session, {signer.fingerprint})
        assert report.ok, (report.first_break, report.problems)
        events = world.audit_entries()
        accepted = [e["docId"] for e in events if e["event"] == "accepted" and e["docId"] in all_ids]
        assert sorted(accepted) == sorted(all_ids)  # the resends of the same packet added nothing
        assert sum(1 for e in events if e["event"] == "acknowledged" and e["docId"] in all_ids) == 2 * len(
            all_ids
        )
    finally:
        second.stop()
