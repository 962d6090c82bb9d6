"""What a real grpcio client sees through the sidecar, for each row of the error table that a
gRPC call can meet, with the sidecar run exactly as the injector configures three pods (see
conftest.py): a port named `grpc`, one with `appProtocol: kubernetes.io/h2c`, one with
neither."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from conftest import APP_TRAILERS, NEITHER, SERVICE, App, Pod

# Wide enough for a loaded 2-core machine: every call that should succeed gets this long.
PATIENCE = 30


def policy(spec: str) -> str:
    return (
        "apiVersion: portcullis.dev/v1alpha1\nkind: UpstreamPolicy\n"
        "metadata: {name: echo, namespace: shop}\n"
        f"spec:\n{spec}"
    )


def window(spec: str) -> str:
    return (
        "apiVersion: portcullis.dev/v1alpha1\nkind: MaintenanceWindow\n"
        "metadata: {name: migration, namespace: shop}\n"
        f"spec:\n{spec}"
    )


def unary(channel: grpc.Channel, payload: bytes, timeout: float = PATIENCE):
    call = channel.unary_unary(f"/{SERVICE}/Unary")
    return call.with_call(payload, timeout=timeout)


def failure(channel: grpc.Channel, payload: bytes = b"hi") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        unary(channel, payload)
    return caught.value


def trailers(err: grpc.RpcError) -> dict[str, str | bytes]:
    return dict(err.trailing_metadata() or ())


def trickle(count: int = 12, every: float = 0.25):
    """A client stream of `count` messages, `every` seconds apart (3 s in all by default)."""
    for i in range(count):
        if i:
            time.sleep(every)
        yield f"m{i}".encode()


def test_the_injector_picked_the_protocol_the_pod_says(pod: Pod):
    args = pod.sidecar.args
    assert args[args.index("--app-protocol") + 1] == pod.case.protocol
    assert json.loads(pod.annotation)["appProtocol"] == pod.case.protocol


def test_a_unary_call_reaches_the_app_and_comes_back(pod: Pod):
    with pod.channel() as channel:
        reply, call = unary(channel, b"ping")
        assert reply == b"echo:ping"
        assert call.code() == grpc.StatusCode.OK
        assert ("x-app-initial", "hello") in call.initial_metadata()
        # Many calls on the one channel, in parallel: HTTP/2 multiplexing on both hops.
        results = [None] * 20

        def one(i: int) -> None:
            results[i] = unary(channel, f"call {i}".encode())[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [f"echo:call {i}".encode() for i in range(20)]
    assert pod.sidecar.metric("portcullis_responses_total", status="200", source="app") == 21


def test_the_apps_own_status_and_trailers_pass_through_untouched(pod: Pod):
    with pod.channel() as channel:
        # A trailers-only answer of the app's own: its status, message and metadata, binary
        # values included.
        err = failure(channel, b"abort:NOT_FOUND:no widget 42")
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert err.details() == "no widget 42"
        assert trailers(err)["x-app-trailer"] == "kept"
        assert trailers(err)["x-app-bin"] == b"\x00\xff\x01"
        # The app's own UNAVAILABLE is the app's, and carries nothing of the sidecar's.
        err = failure(channel, b"abort:UNAVAILABLE:the database is down")
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "the database is down"
        assert "grpc-retry-pushback-ms" not in trailers(err)
        # A full response's trailers, after its message.
        reply, call = unary(channel, b"trailers")
        assert reply == b"echo:trailers"
        assert dict(call.trailing_metadata()) == dict(APP_TRAILERS)
    assert pod.sidecar.metric("portcullis_responses_total", source="proxy") == 0


@pytest.mark.parametrize(
    "timeouts, detail, reason",
    [
        ("responseHeaders: 300ms", "the app sent no response headers within 300ms", "response_headers_timeout"),
        ("request: 300ms", "the request did not complete within 300ms", "request_timeout"),
    ],
)
def test_a_504_is_deadline_exceeded(pod: Pod, timeouts: str, detail: str, reason: str):
    pod.sidecar.apply(policy(f"  timeouts: {{{timeouts}}}\n"))
    with pod.channel() as channel:
        started = time.monotonic()
        err = failure(channel, b"sleep:5")
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert err.details() == detail
        # The sidecar's answer, long before the app's.
        assert time.monotonic() - started < 4
    assert pod.sidecar.metric("portcullis_responses_total", status="504", reason=reason) == 1


def test_an_app_that_is_gone_is_unavailable(pod: Pod):
    with pod.channel() as channel:
        assert unary(channel, b"before")[0] == b"echo:before"
        pod.app.stop()
        err = failure(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "the app refused the connection"
        assert "grpc-retry-pushback-ms" not in trailers(err)
    assert pod.sidecar.metric("portcullis_responses_total", status="502", reason="connection_refused") == 1


def test_an_app_still_starting_is_unavailable_with_retry_pushback(pod: Pod):
    # The app has never answered and refuses: a pod starting, not a broken app.
    pod.app.stop()
    with pod.channel() as channel:
        err = failure(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "the app is starting and does not accept connections yet"
        assert trailers(err)["grpc-retry-pushback-ms"] == "1000"
    assert pod.sidecar.metric("portcullis_responses_total", status="503", reason="app_starting") == 1


def test_an_app_that_does_not_speak_http2_is_unavailable(pod: Pod):
    # The same port, now an HTTP/1.1-only server: it answers the HTTP/2 preface as a bad
    # HTTP/1.1 request.
    pod.app.stop()
    pod.app = App(pod.app.port, http1_only=True)
    with pod.channel() as channel:
        err = failure(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "the app closed the connection before completing its response headers"
    assert pod.sidecar.metric("portcullis_responses_total", status="502", reason="connection_terminated") == 1


def test_maintenance_is_unavailable_with_retry_pushback(pod: Pod):
    pod.sidecar.apply(window('  retryAfter: 7s\n  message: "back after the migration"\n'))
    with pod.channel() as channel:
        err = failure(channel)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "back after the migration"
        assert trailers(err)["grpc-retry-pushback-ms"] == "7000"
        assert trailers(err)["retry-after"] == "7"
    assert pod.sidecar.metric("portcullis_responses_total", status="503", reason="maintenance") == 1


def test_overload_is_unavailable_with_retry_pushback(pod: Pod):
    pod.sidecar.apply(policy("  overload: {maxInFlight: 1, retryAfter: 2s}\n"))
    with pod.channel() as channel:
        holder = threading.Thread(target=unary, args=(channel, b"sleep:3"))
        holder.start()
        deadline = time.monotonic() + PATIENCE
        while pod.sidecar.metric("portcullis_in_flight_requests") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        err = failure(channel)
        holder.join()
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "the app is at its limit of requests in flight and its queue is full"
        # retryAfter 2s plus up to half again, in whole seconds.
        assert trailers(err)["grpc-retry-pushback-ms"] in ("2000", "3000")
    assert pod.sidecar.metric("portcullis_responses_total", status="503", reason="overloaded") == 1


def test_grpcio_retry_policy_waits_as_the_pushback_says(pod: Pod):
    """A window that ends in 6 s. Retrying 10 ms apart, the client would spend its three
    attempts inside it; told by grpc-retry-pushback-ms to wait until it ends, its second
    attempt succeeds."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = now - timedelta(minutes=1), now + timedelta(seconds=6)
    pod.sidecar.apply(window(f"  start: {start.isoformat()}\n  end: {end.isoformat()}\n"))
    retry = {
        "methodConfig": [{
            "name": [{"service": SERVICE}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.01s",
                "maxBackoff": "0.01s",
                "backoffMultiplier": 1,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }]
    }
    with pod.channel(json.dumps(retry)) as channel:
        reply, call = unary(channel, b"after the window")
        assert reply == b"echo:after the window"
        assert datetime.now(timezone.utc) >= end - timedelta(seconds=1)
    assert pod.sidecar.metric("portcullis_responses_total", status="503", reason="maintenance") == 1
    assert pod.sidecar.metric("portcullis_responses_total", status="200", source="app") == 1


def test_a_server_stream_outlives_the_idle_timeout_while_messages_flow(pod: Pod):
    pod.sidecar.apply(policy("  timeouts: {idle: 1s}\n"))
    with pod.channel() as channel:
        stream = channel.unary_stream(f"/{SERVICE}/ServerStream")
        started = time.monotonic()
        messages = list(stream(b"12:0.25", timeout=PATIENCE))
        assert messages == [f"message {i}".encode() for i in range(12)]
        assert time.monotonic() - started > 2.5
    assert pod.sidecar.metric("portcullis_streams_ended_total") == 0


def test_a_bidirectional_stream_outlives_the_idle_timeout_while_messages_flow(pod: Pod):
    pod.sidecar.apply(policy("  timeouts: {idle: 1s}\n"))

    with pod.channel() as channel:
        bidi = channel.stream_stream(f"/{SERVICE}/Bidi")
        started = time.monotonic()
        replies = list(bidi(trickle(), timeout=PATIENCE))
        assert replies == [f"echo:m{i}".encode() for i in range(12)]
        assert time.monotonic() - started > 2.5
    assert pod.sidecar.metric("portcullis_streams_ended_total") == 0


def test_a_subscription_outlives_the_idle_timeout_while_only_the_server_speaks(pod: Pod):
    """A bidirectional stream whose client says one thing and then listens, its side left
    open: activity either way keeps a stream alive, as Envoy's stream idle timeout does."""
    pod.sidecar.apply(policy("  timeouts: {idle: 1s}\n"))
    done = threading.Event()

    def requests():
        yield b"12:0.25"
        done.wait(PATIENCE)

    with pod.channel() as channel:
        push = channel.stream_stream(f"/{SERVICE}/Push")
        started = time.monotonic()
        replies = []
        for reply in push(requests(), timeout=PATIENCE):
            replies.append(reply)
            if len(replies) == 12:
                done.set()
        assert replies == [f"push {i}".encode() for i in range(12)]
        assert time.monotonic() - started > 2.5
    assert pod.sidecar.metric("portcullis_streams_ended_total") == 0


def test_a_client_stream_longer_than_the_response_headers_timeout_is_answered(pod: Pod):
    """The wait for the app's response headers starts once the request is sent whole, as
    Envoy's route timeout and nginx's proxy_read_timeout do: an upload is not a slow app."""
    pod.sidecar.apply(policy("  timeouts: {responseHeaders: 1s, idle: 1s}\n"))

    with pod.channel() as channel:
        upload = channel.stream_unary(f"/{SERVICE}/ClientStream")
        started = time.monotonic()
        assert upload(trickle(), timeout=PATIENCE) == b"got 12"
        assert time.monotonic() - started > 2.5
    assert pod.sidecar.metric("portcullis_responses_total", source="proxy") == 0


# An HTTP/2 app's port gets HTTP/2 for every request, so this is the one case with both.
@pytest.mark.parametrize("pod", [NEITHER], ids=lambda c: c.id, indirect=True)
def test_plain_http1_still_works_beside_grpc(pod: Pod):
    url = f"http://{pod.sidecar.target}/hello"
    with urllib.request.urlopen(url, timeout=PATIENCE) as response:
        assert response.status == 200
        assert response.read() == b"hello over HTTP/1.1\n"
        assert response.headers["Via"] == "1.1 portcullis"
    with pod.channel() as channel:
        assert unary(channel, b"and gRPC beside it")[0] == b"echo:and gRPC beside it"
