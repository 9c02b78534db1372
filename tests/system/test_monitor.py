"""`anchorpipe monitor`: follows a log, keeps every checkpoint, and alerts on a fork (a test forks the log
under a running monitor), a bad signature, a stall and a lost witness quorum, to stderr and a webhook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.cosignature import Cosigner, add_signature_lines
from pipelines.core.note import Signer, sign_note, split_note
from pipelines.ledger.tlog import COSIGNED, TransparencyLog
from pipelines.storage.local import LocalStore

pytestmark = pytest.mark.system  # monitors run as processes or serve webhooks

SIGNER = Signer.generate("monitor.example/log")


def grow(log: TransparencyLog, n: int, tag: str) -> None:
    from pipelines.core.logentry import batch_entry

    log.append([(f"{tag}-{i}", batch_entry(f"{tag}-{i}", bytes([i % 256]) * 32, 1, "2026-11-30T00:00:00Z"))
                for i in range(n)])


@pytest.fixture
def webhook():
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", got
    server.shutdown()


def once(tmp_path: Path, *args: str):
    (tmp_path / "log.vkey").write_text(SIGNER.verifier().text() + "\n")
    return CliRunner().invoke(main, ["monitor", str(tmp_path / "log"), "--log-vkey", str(tmp_path / "log.vkey"),
                                     "--state", str(tmp_path / "state"), "--once", *args])


def test_growth_is_followed_and_every_checkpoint_kept(tmp_path: Path):
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [SIGNER])
    grow(log, 3, "a")
    assert once(tmp_path).exit_code == 0
    grow(log, 5, "b")
    res = once(tmp_path)
    assert res.exit_code == 0 and "size 8" in res.output and "ok" in res.output
    kept = sorted(p.name for p in (tmp_path / "state" / "checkpoints").iterdir())
    assert [k.split("-")[0] for k in kept] == ["000000000003", "000000000008"]


def test_a_log_forked_under_a_running_monitor_is_caught_with_both_checkpoints(tmp_path: Path, webhook):
    url, got = webhook
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [SIGNER])
    grow(log, 4, "a")
    shutil.copytree(tmp_path / "log", tmp_path / "fork-base")  # the operator keeps a copy at size 4
    (tmp_path / "log.vkey").write_text(SIGNER.verifier().text() + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "monitor", str(tmp_path / "log"), "--log-vkey",
                             str(tmp_path / "log.vkey"), "--state", str(tmp_path / "state"), "--interval", "0.1",
                             "--webhook", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        grow(log, 3, "b")  # honest growth: size 7, seen by the monitor
        time.sleep(1.5)
        seen = (tmp_path / "log" / "checkpoint").read_text()
        forked = TransparencyLog.open(LocalStore(tmp_path / "fork-base"), [SIGNER])
        grow(forked, 5, "c")  # another history from size 4: size 9
        shutil.rmtree(tmp_path / "log")
        shutil.copytree(tmp_path / "fork-base", tmp_path / "log")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, out + err
    assert "ALERT fork" in err and seen in err and (tmp_path / "log" / "checkpoint").read_text() in err
    # (while the folder was being swapped the log could not be read: that is alerted too, and not fatal)
    assert got[-1]["kind"] == "fork" and {a["kind"] for a in got[:-1]} <= {"unreachable"}
    assert seen in got[-1]["evidence"]
    assert any(p.name.startswith("000000000007") for p in (tmp_path / "state" / "checkpoints").iterdir())


def test_a_bad_signature_and_a_stall_alert(tmp_path: Path, webhook):
    url, got = webhook
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [SIGNER])
    grow(log, 2, "a")
    assert once(tmp_path, "--stall", "0.3", "--webhook", url).exit_code == 0
    time.sleep(0.5)
    res = once(tmp_path, "--stall", "0.3", "--webhook", url)
    assert res.exit_code == 1 and "ALERT stall" in res.output and got[-1]["kind"] == "stall"
    impostor = Signer(SIGNER.name, b"\x07" * 32)  # the log's name, another key
    cp = log.head().checkpoint
    (tmp_path / "log" / "checkpoint").write_text(sign_note(Checkpoint(cp.origin, cp.size + 1, cp.root).text(),
                                                           [impostor]))
    res = once(tmp_path, "--webhook", url)
    assert res.exit_code == 1 and "ALERT bad-signature" in res.output and got[-1]["kind"] == "bad-signature"


def test_a_lost_witness_quorum_alerts(tmp_path: Path):
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [SIGNER])
    grow(log, 2, "a")
    w1, w2 = Cosigner.generate("w1.example"), Cosigner.generate("w2.example")
    (tmp_path / "w.vkeys").write_text(w1.verifier().text() + "\n" + w2.verifier().text() + "\n")
    head = log.head()
    one = add_signature_lines(head.note, [w1.cosign(split_note(head.note)[0], 1_700_000_000)])
    log.store.put_if_version(COSIGNED, one.encode(), None)
    res = once(tmp_path, "--witness", str(tmp_path / "w.vkeys"), "--witness-quorum", "2")
    assert res.exit_code == 1 and "ALERT no-quorum" in res.output and "1 of the 2" in res.output
    assert once(tmp_path, "--witness", str(tmp_path / "w.vkeys"), "--witness-quorum", "1").exit_code == 0
