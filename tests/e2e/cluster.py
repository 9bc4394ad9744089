"""A Moorage cluster on loopback, as docs/deploy/cluster.md lays it out: PostgreSQL (Debian's,
tests/support_pg.py), one S3 bucket (moto's server, tests/support_s3.py), ``NODES`` nodes of
``moorage serve --workers 2`` sharing one config file, and nginx round-robin in front
(docs/deploy/nginx-cluster.conf, run as written but for ports, paths and certificates).

The last node reaches PostgreSQL through a :class:`TcpRelay` and S3 through a
:class:`~tests.support_s3.FaultyProxy`, so a test can cut it off from either and watch
``/readyz`` while the other nodes keep serving.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from moorage.auth.signing_key import CERT_FILE_NAME, KEY_FILE_NAME, load_or_create
from tests.support_pg import PostgresServer, postgres_server
from tests.support_s3 import FaultyProxy, MotoServer, moto_server

from .nginx import NginxServer
from .support import RegistryServer, free_port
from .tls import Pki, make_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONF = REPO_ROOT / "docs" / "deploy" / "nginx-cluster.conf"
#: The upstream addresses docs/deploy/nginx-cluster.conf names, one per node, in order.
DOCUMENTED_NODES = ("10.0.1.11:5000", "10.0.1.12:5000", "10.0.1.13:5000")
NODES = len(DOCUMENTED_NODES)
WORKERS = 2

ADMIN, ADMIN_PASSWORD = "root", "root-password"
USER, PASSWORD = "alice", "alice-password"
POLICY = f"""\
admins: [{ADMIN}]
rules:
  - repositories: ["*"]
    users: [{USER}]
    actions: [pull, push, delete]
"""


class TcpRelay:
    """A loopback TCP forwarder to ``target`` that can be cut (``down()``: the listening socket
    closes and every relayed connection is reset, so connecting is refused) and restored
    (``up()``, on the same port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    def up(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


#: The node that runs in a pid namespace of its own (``unshare --pid``), standing in for a node
#: on another host: the process ids it records (upload lease holders) mean nothing to the
#: other nodes, which therefore judge its processes by their beats in the database
#: (services/liveness.py).
FOREIGN_NODE = 1


class ClusterNode(RegistryServer):
    """``moorage serve`` as one node; ``foreign``: in a pid namespace of its own."""

    def __init__(self, *args: Any, foreign: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.foreign = foreign

    def command(self) -> list[str]:
        argv = super().command()
        # --fork: the namespace's first process is moorage itself; stop() kills the whole
        # session, unshare included.
        return ["unshare", "--pid", "--fork", *argv] if self.foreign else argv


@dataclass
class Cluster:
    """The running pieces; ``nodes[i]`` stands in for ``DOCUMENTED_NODES[i]``."""

    workdir: Path
    pki: Pki
    postgres: PostgresServer
    database_url: str
    s3: MotoServer
    config: Path
    nodes: list[ClusterNode]
    nginx: NginxServer
    db_relay: TcpRelay
    s3_proxy: FaultyProxy
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def isolated(self) -> RegistryServer:
        """The node behind the relay and the faulty proxy."""
        return self.nodes[-1]

    def client(self, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Client:
        """A client of nginx, the cluster's public address (Basic credentials on /v2)."""
        return httpx.Client(
            base_url=self.nginx.url, timeout=60.0, verify=self.pki.ssl_context(), auth=auth
        )

    def node_client(
        self, node: RegistryServer, auth: tuple[str, str] | None = (USER, PASSWORD)
    ) -> httpx.Client:
        """A client of one node's own port, bypassing nginx."""
        return httpx.Client(base_url=node.url, timeout=60.0, auth=auth)

    def creds(self) -> str:
        return f"{USER}:{PASSWORD}"


def write_htpasswd(path: Path) -> Path:
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
        for user, password in ((ADMIN, ADMIN_PASSWORD), (USER, PASSWORD))
    ]
    path.write_text("".join(lines))
    return path


def shared_settings(
    workdir: Path, database_url: str, s3: MotoServer, public_url: str
) -> dict[str, Any]:
    """The one config every node reads (docs/deploy/cluster.md, "Shared settings")."""
    auth_dir = workdir / "shared"
    auth_dir.mkdir()
    # The token signing key every node must share, made once as a first node would make it.
    load_or_create(None, None, auth_dir)
    policy = auth_dir / "policy.yaml"
    policy.write_text(POLICY)
    storage = s3.storage_overrides(redirect=True)
    return {
        "database": {"url": database_url},
        "storage": storage,
        "auth": {
            "htpasswd": str(write_htpasswd(auth_dir / "htpasswd")),
            "policy_file": str(policy),
            "token": {
                # The issuer and (from nginx's Host and X-Forwarded-Proto) the realm name the
                # load balancer, never a node.
                "issuer": public_url,
                "key_file": str(auth_dir / "auth" / KEY_FILE_NAME),
                "cert_file": str(auth_dir / "auth" / CERT_FILE_NAME),
            },
        },
        "proxy": {"trusted": ["127.0.0.1"]},
        "workers": WORKERS,
        "gc": {"interval": "1h"},
    }


@contextlib.contextmanager
def running_cluster(
    workdir: Path,
    nodes_started: int = NODES,
    isolate_last: bool = True,
    postgres_settings: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start everything, nodes one after another (the first one migrates the schema).

    With ``nodes_started`` below ``NODES`` the documented upstream addresses share the nodes
    round-robin (nginx accepts one server listed twice), so the same nginx config measures
    one node against three (bench/cluster_cost.py). ``isolate_last=False`` connects the last
    node directly too (the relay and the proxy, in Python, would slow a benchmark)."""
    pki = make_pki(workdir / "pki")
    with (
        postgres_server(postgres_settings) as postgres,
        postgres.fresh_database() as database_url,
        moto_server(bucket="moorage-cluster") as s3,
    ):
        nginx_prefix = workdir / "nginx"
        nginx_prefix.mkdir()
        node_ports = [free_port() for _ in range(nodes_started)]
        upstreams = {
            address: node_ports[index % nodes_started]
            for index, address in enumerate(DOCUMENTED_NODES)
        }
        nginx = NginxServer(nginx_prefix, pki, upstreams, conf=CLUSTER_CONF)
        settings = shared_settings(workdir, database_url, s3, nginx.url)
        config = workdir / "moorage.yaml"
        config.write_text(json.dumps(settings, indent=2))  # JSON is YAML

        db_relay = TcpRelay((postgres.host, postgres.port))
        db_relay.up()
        s3_proxy = FaultyProxy(s3.endpoint)
        nodes: list[ClusterNode] = []
        try:
            for index, port in enumerate(node_ports):
                env = {}
                if isolate_last and index == len(node_ports) - 1:
                    relayed = database_url.replace(f":{postgres.port}/", f":{db_relay.port}/")
                    env = {
                        "MOORAGE_DATABASE__URL": relayed,
                        "MOORAGE_STORAGE__S3__ENDPOINT_URL": s3_proxy.endpoint,
                    }
                node = ClusterNode(
                    "moorage",
                    workdir / f"node{index + 1}",
                    extra_args=["--config", str(config)],
                    env=env,
                    foreign=index == FOREIGN_NODE,
                )
                node.port = port  # the port nginx's upstream already names
                nodes.append(node)
                node.start()
            nginx.start()
            try:
                yield Cluster(
                    workdir,
                    pki,
                    postgres,
                    database_url,
                    s3,
                    config,
                    nodes,
                    nginx,
                    db_relay,
                    s3_proxy,
                    settings,
                )
            finally:
                nginx.stop()
        finally:
            for node in nodes:
                node.stop()
            db_relay.down()
            s3_proxy.close()
