"""The browser proof checker (web/, docs/browser-checker.md) in a real headless Chromium: every case of the
verifier corpus through ``window.anchorpipeVerify`` gives the CLI's outcome and check, inputs the corpus does
not hold give the CLI's verdict too, the page's form checks a valid and an altered proof (screenshots kept in
tests/artifacts/), the page makes no network request, and the API serves it at /verify.

`make test` builds web/dist/verify.html first (`make web/dist/verify.html`); run alone, this module builds it
when it is missing, and fails (does not skip) when Chromium or its driver is missing: `make system-deps`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pipelines.cli import main
from pipelines.config import Settings
from pipelines.api import app as api
from tests.conformance.test_verifier_corpus import CORPUS, MANIFEST, cli_args
from tests.support.paths import ARTIFACTS, ROOT

pytestmark = pytest.mark.system  # headless Chromium, and the API serving the page

PAGE = ROOT / "web" / "dist" / "verify.html"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
EXIT = {0: "valid", 1: "invalid", 2: "unusable", 3: "not-anchored"}


def built_page() -> Path:
    """The page `make` built; built here only when it is missing (and npm is there to build it)."""
    if not PAGE.exists():
        if shutil.which("npm") is None:
            pytest.skip("web/dist/verify.html is not built and npm is missing to build it (make system-deps)")
        subprocess.run(["make", "-C", str(ROOT), "web/dist/verify.html"], check=True, timeout=600)
    return PAGE


@pytest.fixture(scope="module")
def browser():
    page = built_page()
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian's chromium and chromium-driver: make system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1900", "--disable-background-networking", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    driver.get(page.as_uri())
    try:
        yield driver
    finally:
        driver.quit()


def pins(case: dict) -> dict:
    """A corpus case's pins, record and policy as window.anchorpipeVerify takes them."""
    opts: dict = {"logVkeys": [], "witnessVkeys": [], "tsaRoots": [], "require": case["require"]}
    for pin in case["pins"]:
        text = (CORPUS / MANIFEST["pins"][pin]).read_text()
        if pin in ("log", "other-log"):
            opts["logVkeys"].append(text)
        elif pin == "witness":
            opts["witnessVkeys"].append(text)
        elif pin == "tsa":
            opts["tsaRoots"].append(text)
        else:
            opts["evmBlocks"] = json.loads(text)
    if case["witness_quorum"]:
        opts["witnessQuorum"] = case["witness_quorum"]
    if case["record"]:
        opts["record"] = (CORPUS / case["record"]).read_text()
    return opts


def check_in_browser(driver, proof: str, opts: dict) -> dict:
    return driver.execute_async_script(
        "const [proof, opts, done] = arguments; const o = {...opts};"
        "if (o.recordHex !== undefined) { o.record = Uint8Array.from(o.recordHex.match(/../g) || [], h => parseInt(h, 16));"
        " delete o.recordHex; }"
        "window.anchorpipeVerify(proof, o).then(done, e => done({error: String(e && e.stack || e)}));", proof, opts)


@pytest.mark.parametrize("case", MANIFEST["cases"], ids=lambda c: c["name"])
def test_the_browser_gives_each_corpus_case_the_clis_outcome_and_check(browser, case):
    verdict = check_in_browser(browser, (CORPUS / case["proof"]).read_text(errors="surrogateescape"), pins(case))
    assert "error" not in verdict, verdict
    assert (verdict["outcome"], verdict["check"]) == (case["expect"], case["check"]), verdict["message"]
    assert verdict["valid"] == (case["expect"] == "valid")
    assert all({"name", "ok", "detail"} <= set(c) for c in verdict["checks"])
    if case["expect"] == "valid":
        verified = {a["kind"] for a in verdict["anchors"] if a["verdict"] == "verified"}
        assert set(case["require"]) <= verified
        assert verdict["content_checked"] == bool(case["record"])
        assert all(c["ok"] is not False for c in verdict["checks"])
    else:
        assert verdict["checks"][-1]["ok"] is False, verdict["checks"]
    if case["name"] == "unpinned-log-key":  # names the key that did sign, as the CLI does (note.py's reading)
        from pipelines.core.note import claimed_signers

        doc = json.loads((CORPUS / case["proof"]).read_text())
        signers = claimed_signers(next(a for a in doc["anchors"] if a["type"] == "tlog")["checkpoint"])
        assert signers and f"its note says it is signed by {', '.join(signers)})" in verdict["message"], \
            verdict["message"]


# Inputs the corpus does not hold, each checked by the CLI and the page alike: (name, change to the valid proof's
# text, extra CLI arguments / page options). The page must give the CLI's outcome and check for each.
VALID = json.loads((CORPUS / "proofs" / "valid-full.json").read_text())


def _with(path: str, value) -> str:
    doc = json.loads(json.dumps(VALID))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return json.dumps(doc)


_DROP = object()
_TEXT = json.dumps(VALID)
EXTRA = [
    ("duplicate-key", _TEXT.replace('"leaf_hash"', '"leaf_hash": "00", "leaf_hash"', 1), {}),
    ("float-index", _TEXT.replace(f'"index": {VALID["batch"]["index"]},', f'"index": {VALID["batch"]["index"]}.0,', 1), {}),
    ("bool-size", _with("batch.size", True), {}),
    ("extra-member", _with("batch.extra", 1), {}),
    ("no-anchors-member", _with("anchors", _DROP), {}),
    ("big-integer", _with("batch.size", 2**60), {}),
    ("nan", _TEXT.replace(f'"size": {VALID["batch"]["size"]}', '"size": NaN', 1), {}),
    ("lone-surrogate-id", _TEXT.replace(json.dumps(VALID["record"]["id"]), '"\\ud800x"', 1), {}),
    ("control-in-id", _with("record.id", "a\u0001b"), {}),
    ("deep", _with("batch.extra", json.loads("[" * 70 + "]" * 70)), {}),
    ("anchor-without-type", _with("anchors.1.type", _DROP), {}),
    ("cosignature-line-malformed", _with("anchors.0.checkpoint", VALID["anchors"][0]["checkpoint"] + "x\n"), {}),
    ("checkpoint-without-signatures", _with("anchors.0.checkpoint", VALID["anchors"][0]["checkpoint"].split("\n\n")[0]
                                            + "\n"), {}),
    ("record-bytes", _TEXT, {"record_bytes": (CORPUS / "records" / "record.json").read_bytes()}),
    ("record-not-json", _TEXT, {"record_text": '{"permit": 3,}'}),
    ("record-duplicate-key", _TEXT, {"record_text": '{"permit": 3, "permit": 3, "holder": "holder 3", "fee": 0}'}),
    ("record-same-content-reformatted", _TEXT, {"record_text": '{"fee":0,"holder":"holder 3","permit":3.0}'}),
    ("quorum-above-witnesses", _TEXT, {"quorum": 4}),
    ("unknown-require", _TEXT, {"require": ["blockchain"]}),
    ("malformed-log-key", _TEXT, {"log_key": "anchorpipe.local/log+29b80ea8+AAAA"}),
    ("require-tsa-only-log-pinned", _TEXT, {"pins": ["log"], "require": ["tsa"]}),
    ("tsa-pinned-only", _TEXT, {"pins": ["tsa"], "require": []}),
    ("evm-pinned-only", _TEXT, {"pins": ["evm"], "require": []}),
    ("witnesses-pinned-no-log", _TEXT, {"pins": ["witness"], "require": []}),
]


@pytest.mark.parametrize(("name", "text", "how"), EXTRA, ids=[e[0] for e in EXTRA])
def test_the_browser_agrees_with_the_cli_beyond_the_corpus(browser, tmp_path, name, text, how):
    case = {**MANIFEST["cases"][0], "proof": str(tmp_path / "proof.json"), "record": "records/record.json"}
    for key in ("pins", "require"):
        case[key] = how.get(key, case[key])
    if "quorum" in how:
        case["witness_quorum"] = how["quorum"]
    (tmp_path / "proof.json").write_text(text, errors="surrogatepass")
    opts = pins(case)
    args = cli_args(case)
    if "record_bytes" in how:
        (tmp_path / "record.bin").write_bytes(how["record_bytes"])
        args[args.index("--record")] = "--record-bytes"
        args[args.index("--record-bytes") + 1] = str(tmp_path / "record.bin")
        del opts["record"]
        opts.update(recordHex=how["record_bytes"].hex(), recordBytes=True)
    if "record_text" in how:
        (tmp_path / "record.json").write_text(how["record_text"])
        args[args.index("--record") + 1] = str(tmp_path / "record.json")
        opts["record"] = how["record_text"]
    if "log_key" in how:
        args[args.index("--log-vkey") + 1] = how["log_key"]
        opts["logVkeys"] = [how["log_key"]]
    res = CliRunner().invoke(main, args)
    # click refuses a bad option value itself (exit 2, a usage message): unusable input, as the page says.
    cli = json.loads(res.output) if res.output.startswith("{") else {"outcome": "unusable", "check": None,
                                                                       "message": res.output}
    page = check_in_browser(browser, text, opts)
    assert "error" not in page, page
    assert (page["outcome"], page["check"]) == (cli["outcome"], cli["check"]), (cli["message"], page["message"])
    assert EXIT[res.exit_code] == cli["outcome"]


def test_the_docs_worked_example_is_valid_in_the_browser_as_with_the_cli(browser):
    """docs/ledgers.md's example (another log, TSA and chain than the corpus's) with the pins it names."""
    ex = ROOT / "docs" / "examples"
    verdict = check_in_browser(browser, (ex / "upgraded-proof.json").read_text(), {
        "logVkeys": [(ex / "log.vkey").read_text()], "tsaRoots": [(ex / "tsa-roots.pem").read_text()],
        "evmBlocks": (ex / "evm-blocks.json").read_text(), "record": (ex / "record.json").read_text(),
        "require": ["tsa", "evm"]})
    assert (verdict["outcome"], verdict["check"]) == ("valid", None), verdict["message"]
    assert {a["kind"] for a in verdict["anchors"] if a["verdict"] == "verified"} == {"tlog", "tsa", "evm"}


def _form(driver, proof: Path, record: Path | None, require: list[str], quorum: int | None, shot: Path) -> str:
    """Drive the page as an auditor: load the files, tick what is required, check, and keep a screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(PAGE.as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.documentElement.dataset.ready"))
    driver.find_element(By.ID, "proof-file").send_keys(str(proof))
    if record is not None:
        driver.find_element(By.ID, "record-file").send_keys(str(record))
    driver.find_element(By.ID, "log-file").send_keys(str(CORPUS / "trust" / "log.vkey"))
    driver.find_element(By.ID, "witness-file").send_keys(str(CORPUS / "trust" / "witnesses.vkeys"))
    driver.find_element(By.ID, "tsa-file").send_keys(str(CORPUS / "trust" / "tsa-roots.pem"))
    driver.find_element(By.ID, "evm-file").send_keys(str(CORPUS / "trust" / "evm-blocks.json"))
    if quorum:
        driver.find_element(By.ID, "witness-quorum").send_keys(str(quorum))
    for kind in require:
        driver.find_element(By.CSS_SELECTOR, f"input[name=require][value={kind}]").click()
    # The files are read asynchronously: wait until every one has landed before checking.
    loaded = "!document.getElementById('record-name').textContent.startsWith('none')" if record else "true"
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "const v = id => document.getElementById(id).value;"
        "return v('log-keys') && v('witness-keys').split('\\n').length === 3 && v('tsa-roots') && v('evm-blocks')"
        f" && !document.getElementById('proof-name').textContent.startsWith('none') && {loaded};"))
    driver.find_element(By.ID, "verify").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "result").get_attribute("data-outcome"))
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(shot))
    return driver.find_element(By.ID, "result").get_attribute("data-outcome")


def test_the_form_checks_a_valid_and_an_altered_proof_and_keeps_screenshots(browser):
    from selenium.webdriver.common.by import By

    every = ["tlog", "witness", "tsa", "evm"]
    valid = _form(browser, CORPUS / "proofs" / "valid-full.json", CORPUS / "records" / "record.json", every, 2,
                  ARTIFACTS / "browser-checker-valid.png")
    assert valid == "valid"
    assert browser.find_element(By.ID, "verdict").text.startswith("VALID")
    text = browser.find_element(By.ID, "result").text
    assert "record content matches content_sha256" in text and "pinned TSA root" in text, text
    invalid = _form(browser, CORPUS / "proofs" / "checkpoint-signature.json", CORPUS / "records" / "record.json", every,
                    2, ARTIFACTS / "browser-checker-invalid.png")
    assert invalid == "invalid"
    assert browser.find_element(By.ID, "verdict").text.startswith("INVALID")
    assert "does not verify" in browser.find_element(By.ID, "result").text
    for shot in ("browser-checker-valid.png", "browser-checker-invalid.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000


def test_the_page_makes_no_network_request(browser):
    """Run last in this module: every request the browser made while checking the corpus and driving the form was
    for the page itself (file://), none for anything else; and the page's policy forbids any."""
    browser.get(PAGE.as_uri())
    time.sleep(0.2)
    requests = [json.loads(e["message"])["message"]["params"]["request"]["url"]
                for e in browser.get_log("performance")
                if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"]
    assert requests and set(requests) == {PAGE.as_uri()}, sorted(set(requests))
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    csp = browser.execute_script(
        "return document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "unsafe" not in csp
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _app():
    """An app that connects to nothing: /verify needs no database, no Redis and no key."""
    return api.create_app(Settings(database_url="postgresql://127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0",
                                   archive="/nonexistent"), check_state=False)


def test_the_api_serves_the_page_at_verify_without_a_key():
    page = built_page()
    resp = TestClient(_app()).get("/verify")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.content == page.read_bytes() and b"anchorpipeVerify" in resp.content


def test_the_api_says_how_to_build_the_page_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "CHECKER_PAGE", tmp_path / "verify.html")
    resp = TestClient(_app()).get("/verify")
    assert resp.status_code == 404
    assert "make web/dist/verify.html" in resp.json()["detail"]


@pytest.mark.parametrize("input_id, size", [("proof-file", (1 << 20) + 1), ("log-file", (1 << 20) + 1)])
def test_a_file_over_its_bound_is_refused_unread(browser, tmp_path, input_id, size):
    """A proof over 1 MiB, a pin file over 1 MiB: CANNOT CHECK, naming the file and the bound."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    big = tmp_path / f"big-{input_id}.json"
    with big.open("wb") as fh:  # sparse: the page must refuse it by its size, without reading it
        fh.truncate(size)
    browser.get(PAGE.as_uri())
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.documentElement.dataset.ready"))
    browser.find_element(By.ID, input_id).send_keys(str(big))
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "result").get_attribute("data-outcome"))
    result = browser.find_element(By.ID, "result")
    assert result.get_attribute("data-outcome") == "unusable"
    assert big.name in result.text and "1048576 bytes" in result.text
