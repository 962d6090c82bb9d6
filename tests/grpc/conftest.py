"""gRPC through the sidecar with real grpcio servers and clients, on 127.0.0.1 (issue 20).

Each test runs the real `portcullis` binary with the arguments that `portcullis inject`
writes into a pod, for three pods: a port named `grpc`, a port (named `api`) that a Service
port with `appProtocol: kubernetes.io/h2c` targets, and a port that says neither (named
`web`); each with its Service in the same file, as `kubectl apply -f` would get it. Only the
config source differs from a pod's: `--controller URL` becomes `--config FILE`, since no
controller runs here; every other flag is the injector's.

The app is one port that serves both gRPC (a grpcio server) and plain HTTP/1.1, told apart
by the HTTP/2 preface, as Go's cmux or a Java server with both on one port would.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PORTCULLIS_BIN", REPO / "target" / "debug" / "portcullis"))
# Not a real certificate: the injector only checks that it is PEM, and passes it on.
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SERVICE = "echo.Echo"
APP_TRAILERS = (("x-app-trailer", "kept"), ("x-app-bin", b"\x00\xff\x01"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Case:
    """A pod's serving port, the `appProtocol` of the Service port that targets it (a
    container port has none), and the protocol the injector must pick for it."""

    id: str
    port_name: str
    service_app_protocol: str | None
    protocol: str


NEITHER = Case("neither", "web", None, "http1")
CASES = [
    Case("port-named-grpc", "grpc", None, "http2"),
    Case("appProtocol-h2c", "api", "kubernetes.io/h2c", "http2"),
    NEITHER,
]


def injected_sidecar(case: Case, app_port: int, proxy_port: int, admin_port: int, work: Path):
    """`portcullis inject` on a Deployment whose app serves on `app_port`, and its Service:
    the sidecar's args and the `portcullis.dev/injected` annotation."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "echo",
                            "image": "example/echo:1",
                            "ports": [{"name": case.port_name, "containerPort": app_port, "protocol": "TCP"}],
                        }
                    ]
                },
            },
        },
    }
    service_port = {"name": case.port_name, "port": 80, "targetPort": case.port_name}
    if case.service_app_protocol:
        service_port["appProtocol"] = case.service_app_protocol
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": "shop"},
        "spec": {"selector": {"app": "echo"}, "ports": [service_port]},
    }
    (work / "deployment.yaml").write_text(yaml.safe_dump_all([service, deployment]))
    (work / "inject.yaml").write_text(
        yaml.safe_dump({"proxyPort": proxy_port, "adminPort": admin_port, "logFormat": "plain"})
    )
    done = subprocess.run(
        [str(BINARY), "inject", "-f", str(work / "deployment.yaml"),
         "--config", str(work / "inject.yaml"), "--ca-pem", FAKE_CA],
        capture_output=True, text=True, check=True, timeout=60,
    )
    template = list(yaml.safe_load_all(done.stdout))[1]["spec"]["template"]
    sidecar = next(c for c in template["spec"]["initContainers"] if c["name"] == "portcullis-proxy")
    return sidecar["args"], template["metadata"]["annotations"]["portcullis.dev/injected"]


class Sidecar:
    """The real binary with the injector's arguments, following a config file."""

    def __init__(self, args: list[str], work: Path):
        self.config = work / "portcullis.yaml"
        self.config.write_text("")
        argv = list(args)
        i = argv.index("--controller")
        argv[i : i + 2] = ["--config", str(self.config)]
        self.args = argv
        self.listen = int(argv[argv.index("--listen") + 1].rsplit(":", 1)[1])
        self.admin = int(argv[argv.index("--admin") + 1].rsplit(":", 1)[1])
        self.log = open(work / "sidecar.log", "wb")
        self.proc = subprocess.Popen([str(BINARY), *argv], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listen}"

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=10) as r:
            return r.read().decode()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the sidecar exited: {self.args}"
            try:
                self.admin_get("/readyz")
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the sidecar never became ready")

    def generation(self) -> int:
        import json

        return json.loads(self.admin_get("/config"))["generation"]

    def apply(self, documents: str) -> None:
        """Writes the config file and waits until the sidecar has it in force."""
        before = self.generation()
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(documents)
        tmp.replace(self.config)
        deadline = time.monotonic() + 30
        while self.generation() == before:
            assert time.monotonic() < deadline, "the sidecar never loaded the new config"
            time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of one of the sidecar's metrics that carry `labels`."""
        total = 0.0
        for line in self.admin_get("/metrics").splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- the app --------------------------------------------------------------------------

def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    """`sleep:<seconds>`, `abort:<CODE>:<message>`, `trailers`, else an echo."""
    text = request.decode(errors="replace")
    if text.startswith("sleep:"):
        # No response headers until the sleep is over.
        time.sleep(float(text.split(":", 1)[1]))
    elif text.startswith("abort:"):
        # A trailers-only response: the status in the one HEADERS frame.
        _, code, message = text.split(":", 2)
        context.set_trailing_metadata(APP_TRAILERS)
        context.abort(grpc.StatusCode[code], message)
    else:
        context.send_initial_metadata((("x-app-initial", "hello"),))
        if text == "trailers":
            context.set_trailing_metadata(APP_TRAILERS)
    return b"echo:" + request


def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """`<count>:<interval seconds>`: that many messages, that far apart."""
    count, interval = request.decode().split(":")
    for i in range(int(count)):
        if i:
            time.sleep(float(interval))
        yield f"message {i}".encode()


def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield b"echo:" + request


def _client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    """Answers once the client has sent everything: how many messages came."""
    return f"got {sum(1 for _ in requests)}".encode()


def _push(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """A subscription: the first message says `<count>:<interval seconds>`, the server
    pushes that many, and the client stays silent (and its stream open) meanwhile."""
    count, interval = next(requests).decode().split(":")
    for i in range(int(count)):
        if i:
            time.sleep(float(interval))
        yield f"push {i}".encode()


def _handlers() -> grpc.GenericRpcHandler:
    # Raw bytes in and out (no serializers): what goes over the wire is grpcio's own framing.
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "Push": grpc.stream_stream_rpc_method_handler(_push),
        },
    )


class _Http1(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"hello over HTTP/1.1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class App:
    """gRPC (grpcio) and HTTP/1.1 on one port; with `http1_only`, an app that speaks
    HTTP/1.1 alone and answers an HTTP/2 preface as the bad HTTP/1.1 request it is."""

    def __init__(self, port: int, http1_only: bool = False):
        self.port = port
        self.http1_only = http1_only
        self.grpc_port = free_port()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.grpc.add_generic_rpc_handlers((_handlers(),))
        self.grpc.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self.grpc.start()
        self.sockets: list[socket.socket] = []
        app = self

        class Front(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                app.sockets.append(self.request)
                if not app.http1_only and _peek_preface(self.request):
                    _splice(self.request, ("127.0.0.1", app.grpc_port))
                else:
                    _Http1(self.request, self.client_address, self.server)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.front = socketserver.ThreadingTCPServer(("127.0.0.1", port), Front)
        self.front.daemon_threads = True
        threading.Thread(target=self.front.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Gone: the port refuses, and connections already open are closed."""
        self.front.shutdown()
        self.front.server_close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.grpc.stop(0)


def _peek_preface(sock: socket.socket) -> bool:
    got = b""
    while len(got) < len(PREFACE):
        got = sock.recv(len(PREFACE), socket.MSG_PEEK)
        if not got or not PREFACE.startswith(got):
            return False
        if len(got) < len(PREFACE):
            time.sleep(0.001)
    return True


def _splice(client: socket.socket, to: tuple[str, int]) -> None:
    upstream = socket.create_connection(to)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    other.start()
    pump(client, upstream)
    other.join()
    upstream.close()


@dataclass
class Pod:
    case: Case
    app: App
    sidecar: Sidecar
    annotation: str
    work: Path

    def channel(self, service_config: str | None = None) -> grpc.Channel:
        options = [("grpc.service_config", service_config)] if service_config else []
        return grpc.insecure_channel(self.sidecar.target, options=options)


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def pod(request) -> Iterator[Pod]:
    case: Case = request.param
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        app_port = free_port()
        args, annotation = injected_sidecar(case, app_port, free_port(), free_port(), work)
        app = App(app_port)
        sidecar = Sidecar(args, work)
        try:
            yield Pod(case, app, sidecar, annotation, work)
        finally:
            sidecar.stop()
            app.stop()
            if getattr(request.node, "rep_call_failed", False):
                print((work / "sidecar.log").read_text(errors="replace"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_failed = report.failed
