"""The test cluster starts even when a port it chose is taken before a node binds it
(other test workers start servers on free ports too)."""

from __future__ import annotations

import socket
from pathlib import Path

from milepost_testkit.cluster import HOST, NatsCluster


def test_a_cluster_whose_route_port_was_taken_starts_on_new_ports(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "cluster")
    taken = cluster.nodes[2].cluster_port
    with socket.socket() as squatter:
        squatter.bind((HOST, taken))
        squatter.listen()
        try:
            cluster.start()
            assert cluster.nodes[2].cluster_port != taken
            assert all(node.running for node in cluster.nodes)
            assert cluster.wait_ready()
        finally:
            cluster.stop()
    assert not any(node.running for node in cluster.nodes)
