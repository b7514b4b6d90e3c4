"""A hostile user's probe of every command, as a stranger runs them: bad flags and files,
outputs that hold inputs, damaged runs, HTTP abuse of serve, the grid's flags and secret, the
Python API. Each case states what must happen (exit status, a line in the output, no traceback,
files untouched) and is counted as holding or failing. Not a test: it trains a tiny run on the
fixture data, starts processes and a server, and prints a table and the counts.

    python benchmarks/probe.py [--workdir DIR]      # about 5-10 min on 2 cores
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data"
SOURCES = ["--data", str(FIXTURE / "boolq"), "--glove", str(FIXTURE / "glove.txt"),
           "--valid-size", "40"]  # fmt: skip
RESULTS: list[tuple[str, bool, str]] = []


def tree(path: Path) -> str:
    """A digest of every file under path (names and bytes): 'untouched' means equal digests."""
    digest = hashlib.sha256()
    for item in sorted(Path(path).rglob("*")) if Path(path).exists() else []:
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


def command(*argv, cwd=None, env=None, timeout=300):
    full = {**os.environ, "KERAS_BACKEND": "torch", **(env or {})}
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=timeout)  # fmt: skip


def case(name, argv, rc, says="", untouched=(), cwd=None, env=None):
    before = {p: tree(p) for p in untouched}
    result = command(*argv, cwd=cwd, env=env)
    output = result.stdout + result.stderr
    problems = []
    if result.returncode != rc:
        problems.append(f"exit {result.returncode}, expected {rc}")
    if says and says not in output:
        problems.append(f"no {says!r}")
    if "Traceback" in output:
        problems.append("a traceback")
    problems += [f"{p} changed" for p in untouched if tree(p) != before[p]]
    record(name, not problems, "; ".join(problems) or output.strip().splitlines()[-1][:120])


def record(name, held, detail=""):
    RESULTS.append((name, held, detail))
    print(f"{'holds' if held else 'FAILS'}  {name}: {detail}", flush=True)


def check(name, function):
    try:
        held, detail = function()
    except Exception as exc:  # noqa: BLE001  (a probe that raises is a failure to count)
        held, detail = False, f"{type(exc).__name__}: {exc}"[:160]
    record(name, held, detail)


def http(port, method, path, body=None, headers=None, timeout=30):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     method=method, headers=headers or {})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe_commands(work: Path, run: Path, run2: Path, cache: Path) -> None:
    c = ["--cache-dir", str(cache)]
    fit = ["kboolq.fit", *SOURCES, *c, "--hidden", "4", "--epochs", "1", "--verbose", "0"]
    case("fit over a run without --overwrite", [*fit, "--out", str(run)], 2, "--overwrite",
         untouched=[run])  # fmt: skip
    case("fit --distill T --out T --overwrite", [*fit, "--distill", str(run), "--out", str(run),
         "--overwrite"], 2, "one of this command's inputs", untouched=[run])  # fmt: skip
    case("fit --refit R --out (parent of R)", ["kboolq.fit", *c, "--refit", str(run), "--out",
         str(run.parent), "--overwrite"], 2, "", untouched=[run])  # fmt: skip
    for flags, says in [
        (["--threads", "0"], "--threads"), (["--seeds", "0"], "--seeds"),
        (["--seeds", "26"], "--seeds"), (["--train-folds", "11"], "--train-folds"),
        (["--hidden", "-1"], "--hidden"), (["--lr", "nan"], "--lr"),
        (["--batching", "sorted"], "--batching"), (["--valid-size", "0"], "--valid-size"),
        (["--passage-percentile", "0"], "--passage-percentile"),
        (["--distill", str(work / "nope")], "nope"), (["--dropout", "1"], "--dropout"),
        (["--seed", "-1"], "--seed"), (["--ema", "1"], "--ema"),
    ]:  # fmt: skip
        case(f"fit {' '.join(flags)}", [*fit, *flags, "--out", str(work / "x")], 2, says)
    case("fit --data missing", ["kboolq.fit", "--data", str(work / "none"), "--glove",
         str(FIXTURE / "glove.txt"), *c, "--out", str(work / "x")], 2, "none")  # fmt: skip
    case("fit --glove missing", ["kboolq.fit", "--data", str(FIXTURE / "boolq"), "--glove",
         str(work / "g.txt"), *c, "--out", str(work / "x")], 2, "g.txt")  # fmt: skip
    afile = work / "a-file"
    afile.write_text("mine")
    case("fit --out an existing file", [*fit, "--out", str(afile)], 2, "", untouched=[afile])
    users = work / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    case("fit --out a folder of the user's", [*fit, "--out", str(users), "--overwrite"], 2, "",
         untouched=[users])  # fmt: skip

    p = ["kboolq.predict", *c]
    case("predict --threshold 2", [*p, str(run), "--question", "a", "--passage", "b",
         "--threshold", "2"], 2, "--threshold")  # fmt: skip
    case("predict a missing run", [*p, str(work / "nope"), "--question", "a", "--passage", "b"],
         2, "nope")  # fmt: skip
    case("predict --jsonl missing", [*p, str(run), "--jsonl", str(work / "none.jsonl")], 2,
         "none.jsonl")  # fmt: skip
    bad = work / "bad.jsonl"
    bad.write_text('{"question": "is it", "passage": "it is"}\nnot json\n{"question": 3}\n')
    case("predict --jsonl with bad lines", [*p, str(run), "--jsonl", str(bad)], 1,
         '"line"')  # fmt: skip
    case("predict --threads 100000", [*p, str(run), "--question", "is the film good",
         "--passage", "the film is good", "--threads", "100000"], 0, "cores available")  # fmt: skip
    for edit, says in [
        (lambda c: c["embeddings"].update(source=3), "'embeddings.source': expected str"),
        (lambda c: c["data"].update(source=[1]), "'data.source': expected str"),
        (lambda c: c["hyperparameters"].update(hidden_size="4"), "hidden_size"),
        (lambda c: c["layout"].update(q_max=-1), "layout"),
        (lambda c: c.pop("embeddings"), "'embeddings' is missing"),
        (lambda c: c["embeddings"].update(source=str(work / "gone.txt")),
         "'embeddings.source'"),
    ]:  # fmt: skip
        damaged = work / "damaged"
        shutil.rmtree(damaged, ignore_errors=True)
        shutil.copytree(run, damaged)
        config = json.loads((damaged / "config.json").read_text())
        edit(config)
        (damaged / "config.json").write_text(json.dumps(config))
        case(f"predict with config.json: {says}", [*p, str(damaged), "--question", "a",
             "--passage", "b"], 2, says)  # fmt: skip
    damaged = work / "damaged"
    (damaged / "config.json").write_text("{not json")
    case("predict with config.json not JSON", [*p, str(damaged), "--question", "a",
         "--passage", "b"], 2, "config.json")  # fmt: skip
    shutil.rmtree(damaged)
    shutil.copytree(run, damaged)
    model = damaged / "model.keras"
    model.write_bytes(model.read_bytes()[:1000])
    case("predict with model.keras cut short", [*p, str(damaged), "--question", "a",
         "--passage", "b"], 2, "model.keras")  # fmt: skip
    case("evaluate --split nope", ["kboolq.evaluate", str(run), *c, "--split", "nope"], 2, "")
    case("evaluate --batch-size 0", ["kboolq.evaluate", str(run), *c, "--batch-size", "0"], 2,
         "--batch-size")  # fmt: skip

    e = ["kboolq.export", *c]
    case("export --out RUN", [*e, str(run), "--out", str(run), "--overwrite"], 2, "",
         untouched=[run])  # fmt: skip
    case("export --out (the folder holding RUN)", [*e, str(run), "--out", str(run.parent),
         "--overwrite"], 2, "", untouched=[run])  # fmt: skip
    link = work / "link-to-run"
    link.symlink_to(run)
    case("export --out a symlink to RUN", [*e, str(run), "--out", str(link), "--overwrite"], 2,
         "", untouched=[run])  # fmt: skip
    case("export --threshold 1.5", [*e, str(run), "--out", str(work / "o"), "--threshold",
         "1.5"], 2, "--threshold")  # fmt: skip
    case("export --check missing", [*e, str(run), "--out", str(work / "o"), "--check",
         str(work / "none.jsonl")], 2, "none.jsonl")  # fmt: skip
    case("export --check with a bad line", [*e, str(run), "--out", str(work / "o2"), "--check",
         str(bad)], 2, "bad.jsonl:2")  # fmt: skip
    case("export --out a folder of the user's", [*e, str(run), "--out", str(users)], 2, "",
         untouched=[users])  # fmt: skip

    n = ["kboolq.ensemble", *c]
    case("ensemble of one run twice", [*n, str(run), str(run), "--out", str(work / "e")], 2, "")
    case("ensemble --out one of its members", [*n, str(run), str(run2), "--out", str(run),
         "--overwrite"], 2, "", untouched=[run])  # fmt: skip

    g = ["tuning.grid", *SOURCES, *c, "--verbose", "0", "--hidden", "4", "--epochs", "1"]
    for flags, says in [
        (["--hidden", "4,x"], "--hidden"), (["--workers", "0"], "--workers"),
        (["--lease", "0"], "--lease"), (["--tls-cert", str(afile)], "--tls-key"),
        (["--worker", "nohost"], "--worker"), (["--grid", str(work / "none.toml")], "none.toml"),
        (["--chief", "127.0.0.1:99999"], "--chief"),
    ]:  # fmt: skip
        case(f"grid {' '.join(flags)}", [*g, *flags, "--out", str(work / "grid")], 2, says)
    case("grid --chief with a secret holding a space", [*g, "--chief", f"127.0.0.1:{free_port()}",
         "--out", str(work / "grid")], 2, "visible ASCII",
         env={"KBOOLQ_GRID_SECRET": "two words"})  # fmt: skip
    case("carve a folder into itself", ["kboolq.carve", str(FIXTURE / "boolq"),
         str(FIXTURE / "boolq")], 2, "", untouched=[FIXTURE / "boolq"])  # fmt: skip
    case("carve --size 0", ["kboolq.carve", str(FIXTURE / "boolq"), str(work / "c"), "--size",
         "0"], 2, "--size")  # fmt: skip
    case("preprocess --threads 1", ["kboolq.preprocess", *SOURCES, *c, "--threads", "1"], 0,
         "fingerprint")  # fmt: skip

    vectors = work / "vectors"
    vectors.mkdir()
    lines = (FIXTURE / "glove.txt").read_text().splitlines()  # the fixture's 8-d vectors
    count, dim = len(lines), len(lines[0].split()) - 1
    files = {
        "bom.vec": "\ufeff" + f"{count} {dim}\n" + "".join(f"{x} \n" for x in lines),
        "half-spaces.vec": f"{count} {dim}\n"
        + "".join(f"{x}{' ' * (i % 2)}\n" for i, x in enumerate(lines)),
        "short-first.txt": "\n".join([lines[0].rsplit(" ", 1)[0], *lines[1:]]) + "\n",
        "lossy.txt": "".join(f"{x}{' 9' * (i % 2)}\n" for i, x in enumerate(lines)),
        "crlf.txt": "".join(f"{x}\r\n" for x in lines),
    }
    for name, text in files.items():
        (vectors / name).write_text(text, encoding="utf-8", newline="")
    q = ["kboolq.preprocess", "--data", str(FIXTURE / "boolq"), "--valid-size", "40", *c]
    case("vectors with a byte-order mark", [*q, "--glove", str(vectors / "bom.vec")], 0,
         "fingerprint")  # fmt: skip
    case("vectors with spaces ending some lines", [*q, "--glove",
         str(vectors / "half-spaces.vec")], 0, "fingerprint")  # fmt: skip
    case("vectors with Windows line ends", [*q, "--glove", str(vectors / "crlf.txt")], 0,
         "fingerprint")  # fmt: skip
    short = f":1: expected a word and {dim} numbers"
    case("vectors whose first line is a number short", [*q, "--glove",
         str(vectors / "short-first.txt")], 2, short)  # fmt: skip
    case("vectors that would lose half their lines", [*q, "--glove",
         str(vectors / "lossy.txt")], 2, f"{count // 2:,} of {count:,} lines")  # fmt: skip

    shadow = work / "shadow"
    (shadow / "kboolq" / "kboolq").mkdir(parents=True)
    case("a command run beside a clone named kboolq", ["kboolq.predict", "--help"], 1,
         "hides the installed kboolq package", cwd=shadow)  # fmt: skip


def probe_api(run: Path, cache: Path) -> None:
    from kboolq.errors import UserError

    loaded = kboolq.load_run(run, cache)
    check("load_run(run).predict([])", lambda: (loaded.predict([]).shape == (0,), "empty"))

    def refused(rows):
        try:
            loaded.predict(rows)
        except UserError as exc:
            return True, str(exc)[:100]
        return False, "answered"

    check("predict([{'question': 1}])", lambda: refused([{"question": 1, "passage": "x"}]))
    check("predict(['not a dict'])", lambda: refused(["not a dict"]))

    def missing():
        try:
            kboolq.load_run(run.parent / "nope", cache)
        except UserError as exc:
            return True, str(exc)[:100]
        return False, "loaded"

    check("load_run(missing)", missing)
    check("run.encode(dict rows)", lambda: (
        loaded.encode([{"question": "is it", "passage": "it is"}]).splits["rows"].ids.shape[0]
        == 1, "encoded"))  # fmt: skip


def probe_serve(run: Path, cache: Path, work: Path) -> None:
    from kboolq import serve

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kboolq.serve", str(run), "--port", str(port), "--cache-dir",
         str(cache), "--max-rows", "3", "--max-chars", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            http(port, "GET", "/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                record("serve starts", False, server.stderr.read()[-200:])
                return
            time.sleep(0.3)
    row = json.dumps({"question": "is the film good", "passage": "the film is good"}).encode()
    status = lambda want, *a, **k: lambda: ((s := http(port, *a, **k))[0] == want, str(s)[:100])  # noqa: E731
    check("GET /health", status(200, "GET", "/health"))
    check("POST /predict one row", status(200, "POST", "/predict", row))
    check("POST one unanswerable row: 422", status(422, "POST", "/predict",
          b'{"question": "zzqx", "passage": "the"}'))  # fmt: skip
    check("POST garbage: 400", status(400, "POST", "/predict", b"\x00\xff{"))
    check("POST 1,000 levels deep: 400", status(400, "POST", "/predict",
          b'{"question": ' + b"[" * 1000 + b"]" * 1000 + b"}"))  # fmt: skip
    check("POST 4 rows over --max-rows 3: 413", status(413, "POST", "/predict",
          json.dumps([json.loads(row)] * 4).encode()))  # fmt: skip
    check("POST 51 characters over --max-chars 50: 413", status(413, "POST", "/predict",
          json.dumps({"question": "a" * 51, "passage": "b"}).encode()))  # fmt: skip
    astral = "\U0001f600" * 50
    faces = json.dumps([{"question": astral, "passage": astral}] * 3).encode()
    check("POST 3 rows of 50 astral characters: within the limits",
          status(200, "POST", "/predict", faces))  # fmt: skip
    check("GET /predict: 405", status(405, "GET", "/predict"))
    check("POST /health: 405", status(405, "POST", "/health", b"{}"))
    check("GET /nope: 404", status(404, "GET", "/nope"))
    check("a declared body of 10 GB: 413", status(413, "POST", "/predict", b"{}",
          headers={"Content-Length": str(10**10)}))  # fmt: skip

    def half_headers():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(serve.READ_TIMEOUT + 5)
        started = time.monotonic()
        closed = sock.recv(100) == b""
        return closed, f"closed after {time.monotonic() - started:.1f} s"

    def half_body():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
        sock.settimeout(serve.READ_TIMEOUT + 5)
        answer = sock.recv(100)
        return answer.startswith(b"HTTP/1.1 408"), answer[:20].decode(errors="replace")

    def many_idle():
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        code = http(port, "POST", "/predict", row)[0]
        for sock in socks:
            sock.close()
        return code == 200, f"with 100 idle connections: {code}"

    check("half-sent headers are cut off", half_headers)
    check("a half-sent body gets 408", half_body)
    check("100 idle connections, then a request", many_idle)
    case("a second serve on the same port", ["kboolq.serve", str(run), "--port", str(port),
         "--cache-dir", str(cache)], 2, "cannot listen there")  # fmt: skip
    for flags, says in [(["--port", "70000"], "--port"), (["--max-rows", "0"], "--max-rows"),
                        (["--threshold", "-1"], "--threshold")]:  # fmt: skip
        case(f"serve {' '.join(flags)}", ["kboolq.serve", str(run), *flags], 2, says)

    def sigterm_while_stalled():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{")
        time.sleep(0.5)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        seconds = time.monotonic() - started
        err = server.stderr.read()
        return (code == 143 and seconds < serve.SHUTDOWN_GRACE + 3 and "Traceback" not in err,
                f"exit {code} after {seconds:.1f} s")  # fmt: skip

    check("SIGTERM while a client stalls", sigterm_while_stalled)
    if server.poll() is None:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kboolq-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    run, run2 = work / "runs" / "run", work / "runs" / "run2"
    for path, seed in ((run, "0"), (run2, "1")):
        if not (path / "model.keras").exists():
            trained = command("kboolq.fit", *SOURCES, "--cache-dir", str(cache), "--hidden", "4",
                              "--epochs", "1", "--verbose", "0", "--seed", seed, "--out",
                              str(path))  # fmt: skip
            assert trained.returncode == 0, trained.stderr[-2000:]
    probe_commands(work, run, run2, cache)
    probe_api(run, cache)
    probe_serve(run, cache, work)
    held = sum(ok for _, ok, _ in RESULTS)
    print(f"\n{held} of {len(RESULTS)} cases hold ({100 * held / len(RESULTS):.1f} %)")
    for name, ok, detail in RESULTS:
        if not ok:
            print(f"- fails: {name}: {detail}")


if __name__ == "__main__":
    main()
