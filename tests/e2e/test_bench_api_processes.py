"""The benchmarks' server with two API processes (`bench.common.guanai_server(api_processes=2)`,
used by `bench.api_ingest --api-processes 2`): each on its own port and healthy, one database and
one set of secrets between them, every process stopped on exit."""

from __future__ import annotations

import httpx

from bench.common import guanai_server


def test_two_api_processes_serve_one_store_and_stop_together(fresh_database_url: str, nats_url: str) -> None:
    with guanai_server(fresh_database_url, nats_url=nats_url, api_processes=2) as server:
        assert len(server.apis) == 2
        assert server.apis[0] is server.api
        assert server.base_urls[0] == server.base_url
        assert len(set(server.base_urls)) == 2
        assert len(set(server.api_pids)) == 2
        assert all(p.alive() for p in (*server.apis, server.projector))
        headers = {"Authorization": f"Bearer {server.token()}"}
        first, second = server.base_urls
        made = httpx.post(
            f"{second}/org-units",
            json={"code": "539999000000", "name": "基准县", "level": "county", "parent_id": None},
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        unit = made.json()["id"]
        for url in server.base_urls:
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        read = httpx.get(f"{first}/org-units/{unit}", headers=headers, timeout=30)
        assert read.status_code == 200, read.text
        assert read.json()["id"] == unit
        processes = [*server.apis, server.projector]
    assert not any(p.alive() for p in processes)
