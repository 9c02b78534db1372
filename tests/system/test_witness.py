"""``anchorpipe witness serve`` as a process, spoken to over HTTP: the spec's answers, limits, and SIGKILL.

The SIGKILL test sends checkpoints of two histories of one log (a main one and a
fork sharing its first leaves) from several threads while the witness is killed
and restarted on the same state file; afterwards every cosignature it gave must
lie on one history, and its state must never hold less than it cosigned.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from pipelines.core import merkle
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.cosignature import WitnessKey, add_signature_lines, verify_cosignatures
from pipelines.core.note import Signer, sign_note
from pipelines.core.witness import AddCheckpoint
from pipelines.demo.services import free_port, wait_for_port, witness_command, witness_server

pytestmark = pytest.mark.system  # a witness process over HTTP

LOG = Signer.generate("log.example/witnessed")
MAIN = [merkle.leaf_hash(b"main %d" % i) for i in range(60)]
FORK_AT = 10  # the fork shares the first 10 leaves
FORK = MAIN[:FORK_AT] + [merkle.leaf_hash(b"fork %d" % i) for i in range(50)]


def note_of(history: list[bytes], size: int, signer: Signer = LOG) -> str:
    return sign_note(Checkpoint(signer.name, size, merkle.Tree(history[:size]).root).text(), [signer])


def body(history: list[bytes], old: int, size: int, signer: Signer = LOG) -> bytes:
    proof = merkle.consistency_proof(merkle.Tree(history[:size]).node, old, size) if 0 < old < size else []
    return AddCheckpoint(old, tuple(proof), note_of(history, size, signer)).body()


def post(url: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/add-checkpoint", content=data, timeout=10)


@pytest.fixture
def witness(tmp_path):
    with witness_server(tmp_path, "witness.example/w1", [LOG.verifier().text()]) as w:
        yield w


def test_the_witness_answers_as_the_spec_says(witness, tmp_path):
    key = WitnessKey.parse(witness.vkey)
    r = post(witness.url, body(MAIN, 0, 5))
    assert r.status_code == 200
    cosigned = add_signature_lines(note_of(MAIN, 5), [r.text])
    assert [c.witness for c in verify_cosignatures(cosigned, [key])] == [key.name]
    # A wrong old size: 409, the size it holds, as text/x.tlog.size.
    r = post(witness.url, body(MAIN, 0, 8))
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (409, "5\n", "text/x.tlog.size")
    assert post(witness.url, body(MAIN, 5, 8)).status_code == 200
    assert post(witness.url, body(MAIN, 8, 12)).status_code == 200
    assert post(witness.url, body(MAIN, 12, 12)).status_code == 200  # the same checkpoint again
    # A bad consistency proof: 422; a fork at the size it holds: 409; neither changes what it holds.
    bad = AddCheckpoint(12, (b"\x00" * 32,), note_of(MAIN, 15)).body()
    assert post(witness.url, bad).status_code == 422
    assert post(witness.url, body(FORK, 12, 12)).status_code == 409
    assert post(witness.url, body(FORK, 12, 20)).status_code == 422  # the fork's proof does not reach root(12)
    # Unknown log 404, a log's name with another key 403, old beyond the checkpoint 400, malformed 400.
    assert post(witness.url, body(MAIN, 0, 5, Signer.generate("other.example/log"))).status_code == 404
    assert post(witness.url, body(MAIN, 12, 13, Signer(LOG.name, b"\x05" * 32))).status_code == 403
    assert post(witness.url, AddCheckpoint(13, (), note_of(MAIN, 12)).body()).status_code == 400
    assert post(witness.url, b"hello").status_code == 400
    assert post(witness.url, b"old 0\n\n" + b"x" * 70_000).status_code == 413
    assert httpx.get(f"{witness.url}/add-checkpoint").status_code == 405
    # It still holds size 12; the refused fork is kept as evidence.
    assert post(witness.url, body(MAIN, 12, 13)).status_code == 200
    about = httpx.get(witness.url + "/").text
    assert witness.vkey in about and LOG.verifier().text() in about
    db = sqlite3.connect(tmp_path / "witness.example_w1" / "state.db")
    rows = db.execute("SELECT note, reason FROM evidence").fetchall()
    # Only the fork is evidence (two checkpoints the log signed at size 12), with the one it conflicts with; a
    # made-up consistency proof proves nothing about the log and is not kept.
    assert [note for note, _ in rows] == [note_of(FORK, 12)]
    assert "forked" in rows[0][1] and note_of(MAIN, 12) in rows[0][1]


def test_evidence_is_kept_once_and_never_on_anyones_say_so(witness, tmp_path):
    assert post(witness.url, body(MAIN, 0, 12)).status_code == 200
    for _ in range(20):  # a genuine checkpoint with a made-up proof, again and again
        assert post(witness.url, AddCheckpoint(12, (b"\x01" * 32,), note_of(MAIN, 20)).body()).status_code == 422
        assert post(witness.url, body(FORK, 12, 12)).status_code == 409  # the same fork, sent again and again
    db = sqlite3.connect(tmp_path / "witness.example_w1" / "state.db")
    assert db.execute("SELECT count(*) FROM evidence").fetchone()[0] == 1


def test_a_witness_refuses_to_start_without_its_state_unless_told_it_is_new(tmp_path):
    import subprocess

    port = free_port()
    args, _ = witness_command(tmp_path, "witness.example/lost", [LOG.verifier().text()], port)
    assert "--init" in args  # the first start of a new witness
    state = Path(args[args.index("--state") + 1])
    args.remove("--init")
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "does not exist" in res.stderr and "--init" in res.stderr, res.stderr
    assert not state.exists()


def test_the_rate_limit_holds_per_log_whatever_the_address(tmp_path):
    """Clients from 127.0.0.1 and 127.0.0.2 have a bucket each, and the log they both speak for one more."""
    clients = [httpx.Client(transport=httpx.HTTPTransport(local_address=a), timeout=10)
               for a in ("127.0.0.1", "127.0.0.2")]
    with witness_server(tmp_path, "witness.example/perlog", [LOG.verifier().text()], rate=1) as w:
        answers = [clients[i % 2].post(f"{w.url}/add-checkpoint", content=body(MAIN, 0, 1)).status_code
                   for i in range(120)]
        # Each address alone stays within its own burst (60 < 100), so only the log's bucket can refuse.
        assert answers.count(429) >= 10, answers


def test_requests_over_the_rate_limit_get_429_with_retry_after(tmp_path):
    with witness_server(tmp_path, "witness.example/slow", [LOG.verifier().text()], rate=1) as w:
        answers = [post(w.url, body(MAIN, 0, 0 + 1)).status_code for _ in range(130)]
        assert 429 in answers and answers[0] in (200, 409)
        r = next(r for r in (post(w.url, b"x") for _ in range(5)) if r.status_code == 429)
        assert int(r.headers["retry-after"]) >= 1


def test_a_witness_killed_at_any_moment_never_cosigns_two_histories_nor_forgets(tmp_path):
    port = free_port()
    args, vkey = witness_command(tmp_path, "witness.example/kill", [LOG.verifier().text()], port)
    key = WitnessKey.parse(vkey)
    state_file = tmp_path / "witness.example_kill" / "state.db"
    url = f"http://127.0.0.1:{port}"
    cosigned: list[tuple[int, bytes, float]] = []  # size, root, when the answer came
    guess = {"old": 0}
    lock = threading.Lock()
    done = threading.Event()  # set once enough kills and cosignatures were seen (a slow machine takes longer)
    deadline = time.monotonic() + 120
    rng = random.Random(7)

    errors: list[BaseException] = []

    def sender() -> None:
        try:
            send()
        except BaseException as exc:  # an assertion in a thread: fail the test with it
            errors.append(exc)

    def send() -> None:
        client = httpx.Client(timeout=2)
        while not done.is_set():
            with lock:
                old = guess["old"]
                history = FORK if rng.random() < 0.3 else MAIN
                size = max(1, min(old + rng.randint(0, 3), len(history)))
            try:
                r = client.post(f"{url}/add-checkpoint", content=body(history, old, size))
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if r.status_code == 200:
                note = add_signature_lines(note_of(history, size), [r.text])
                assert verify_cosignatures(note, [key])
                with lock:
                    cosigned.append((size, merkle.Tree(history[:size]).root, time.monotonic()))
                    guess["old"] = max(guess["old"], size)
            elif r.status_code == 409 and r.text.strip().isdigit():
                with lock:
                    guess["old"] = int(r.text)

    log = (tmp_path / "kill.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    kills = 0
    try:
        while (kills < 4 or len(cosigned) < 25) and time.monotonic() < deadline:
            time.sleep(random.uniform(0.2, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            killed_at = time.monotonic()
            with lock:
                before = max((s for s, _, at in cosigned if at < killed_at), default=0)
            held = sqlite3.connect(state_file).execute("SELECT size FROM checkpoints").fetchone()
            assert held is not None and held[0] >= before, "the witness forgot a size it had cosigned"
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            wait_for_port(port, proc)
    finally:
        done.set()
        for t in threads:
            t.join()
        proc.terminate()
        proc.wait()
    assert not errors, errors
    assert kills >= 4 and len(cosigned) >= 25, (kills, len(cosigned))
    main_roots = {n: merkle.Tree(MAIN[:n]).root for n in range(1, len(MAIN) + 1)}
    fork_roots = {n: merkle.Tree(FORK[:n]).root for n in range(1, len(FORK) + 1)}
    beyond = {("main" if root == main_roots.get(size) else "fork") for size, root, _ in cosigned if size > FORK_AT}
    assert len(beyond) <= 1, "the witness cosigned checkpoints of two histories"
    for size, root, _ in cosigned:
        assert root in (main_roots.get(size), fork_roots.get(size))
    held = sqlite3.connect(state_file).execute("SELECT size FROM checkpoints").fetchone()[0]
    assert held == max(s for s, _, _ in cosigned)


def test_keygen_writes_a_private_key_and_prints_the_vkey(tmp_path: Path):
    out = subprocess.run([*witness_command(tmp_path, "x", [], 1)[0][:3], "witness", "keygen",
                          str(tmp_path / "k" / "w.key"), "--name", "w.example/k"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    key = WitnessKey.parse(out.stdout.strip())
    assert key.name == "w.example/k"
    assert (tmp_path / "k" / "w.key").stat().st_mode & 0o077 == 0
    again = subprocess.run([*witness_command(tmp_path, "x", [], 1)[0][:3], "witness", "keygen",
                            str(tmp_path / "k" / "w.key")], capture_output=True, text=True)
    assert again.returncode != 0 and "not overwriting" in again.stderr
