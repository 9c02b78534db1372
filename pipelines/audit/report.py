"""The evidence report of an audit: ``report.json`` for machines, ``report.html`` for people.

The HTML page is self-contained (inline CSS, an inline SVG plot, no script, no
request): what was checked, against which pinned keys, the log's state, counts
per agency, the anchoring delay of each batch over time, and every failure with
its evidence.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from pipelines.audit.archive import AuditResult

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
.ok{color:#116329;font-weight:600}.bad{color:#a40e26;font-weight:600}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f6f8fa}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
code{font-size:12px;word-break:break-all}"""


def write_report(result: AuditResult, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    doc = result.to_json()
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    html_path = folder / "report.html"
    html_path.write_text(render_html(doc))
    return json_path, html_path


def print_pdf(html: Path) -> Path:
    """``report.pdf`` beside ``html``, printed by a headless Chromium (Debian's ``chromium``), which lays the
    page out exactly as a browser shows it. InputError when no Chromium is installed."""
    import shutil
    import subprocess
    import tempfile

    from pipelines.errors import InputError

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        raise InputError("--pdf needs Chromium (apt-get install chromium); report.html is written anyway")
    pdf = html.with_suffix(".pdf")
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                              "--no-pdf-header-footer", f"--print-to-pdf={pdf}", html.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    if res.returncode or not pdf.exists():
        raise InputError(f"Chromium could not print {html}: {res.stderr.strip()[-300:]}")
    return pdf


def delays(doc: dict[str, Any]) -> list[tuple[datetime, float, str]]:
    """(seal time, seconds from seal to the earliest external anchor's time, agency) of each anchored batch."""
    out = []
    for b in doc["bundles"]:
        times = [t for k, t in b["anchors"].items() if k in ("tsa", "evm") and t]
        if b["sealed_at"] and times:
            sealed = _time(b["sealed_at"])
            out.append((sealed, (min(_time(t) for t in times) - sealed).total_seconds(), b["agency"]))
    return sorted(out)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def plot(points: list[tuple[datetime, float, str]], width: int = 900, height: int = 260) -> str:
    """An SVG scatter of anchoring delay (s) against seal time, with its axes' ranges labelled."""
    if not points:
        return "<p>No batch carries a TSA or EVM anchor: no anchoring delay to plot.</p>"
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    top = max(p[1] for p in points) * 1.1 or 1.0
    left, bottom = 60, height - 30
    dots = "".join(
        f'<circle cx="{left + (t - t0).total_seconds() / span * (width - left - 10):.1f}" '
        f'cy="{bottom - max(d, 0) / top * (bottom - 10):.1f}" r="3" fill="#0969da"><title>{escape(a)} sealed '
        f'{t.isoformat()}: {d:.1f} s</title></circle>' for t, d, a in points)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="anchoring delay per batch over time">'
            f'<line x1="{left}" y1="{bottom}" x2="{width - 5}" y2="{bottom}" stroke="#57606a"/>'
            f'<line x1="{left}" y1="5" x2="{left}" y2="{bottom}" stroke="#57606a"/>'
            f'<text x="{left - 5}" y="15" text-anchor="end" font-size="11">{top:.0f} s</text>'
            f'<text x="{left - 5}" y="{bottom}" text-anchor="end" font-size="11">0 s</text>'
            f'<text x="{left}" y="{height - 8}" font-size="11">{t0.isoformat()}</text>'
            f'<text x="{width - 5}" y="{height - 8}" text-anchor="end" font-size="11">{t1.isoformat()}</text>'
            f'{dots}</svg>')


def _rows(rows: list[list[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)


def render_html(doc: dict[str, Any]) -> str:
    log, pins = doc["log"], doc["pins"]
    verdict = ('<p class="ok">PASSED: every check below held.</p>' if doc["ok"] else
               f'<p class="bad">FAILED: {len(doc["failures"])} finding(s), each with its evidence below.</p>')
    agencies = _rows([[escape(a), f'{r["batches"]:,}', f'{r["records"]:,}', f'{r["valid"]:,}', f'{r["failed"]:,}']
                      for a, r in sorted(doc["per_agency"].items())])
    keys = "".join(f"<li><code>{escape(k)}</code></li>" for k in pins["log_keys"] + pins["witness_keys"])
    consistency = "".join(f'<li>{escape(c["saved"])}: size {c["size"]} → {log["size"]}, consistent '
                          f'({c["proof_hashes"]} proof hashes)</li>' for c in log.get("consistency", []))
    witnessed = log.get("witnessed")
    witness_line = (f'<p>Newest cosigned checkpoint: size {witnessed["size"]}, cosigned by '
                    f'{len(witnessed["cosigned_by"])} pinned witness(es): {escape(", ".join(witnessed["cosigned_by"]) or "none")}.</p>'
                    if witnessed else "")
    sample = doc.get("sample")
    sample_line = (f'<p>A random sample of {sample["drawn"]:,} of {sample["of"]:,} proofs was verified: with 95 % '
                   f'confidence fewer than {sample["bad_fraction_below"]:.2%} of all proofs are bad.</p>'
                   if sample else "<p>Every proof of every audited bundle was verified.</p>")
    failures = "".join(f'<h3>{escape(f["what"])}</h3><p><code>{escape(f["where"])}</code></p>'
                       f'<pre>{escape(f["evidence"])}</pre>' for f in doc["failures"]) or "<p>None.</p>"
    bundles = _rows([[escape(b["agency"]), f'<code>{escape(b["batch"])}</code>', f'{b["records"]:,}',
                      escape(b["sealed_at"]), escape(", ".join(f"{k} {t or ''}".strip() for k, t in b["anchors"].items())),
                      f'<span class="{"ok" if b["outcome"] == "valid" else "bad"}">{escape(b["outcome"])}</span>']
                     for b in doc["bundles"][:2000]])
    more = f"<p>(the first 2,000 of {len(doc['bundles']):,}; report.json has all)</p>" if len(doc["bundles"]) > 2000 else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>anchorpipe audit of {escape(doc["archive"])}</title><style>{CSS}</style></head><body>
<h1>Audit of {escape(doc["archive"])}</h1>{verdict}
<p>From {escape(doc["started"])} to {escape(doc["finished"])}. Required to verify: {escape(", ".join(pins["require"]) or "any one anchor")}{" (policy " + escape(pins["policy"]) + ")" if pins["policy"] else ""}; witness quorum {pins["witness_quorum"] or "none"}; TSA roots pinned: {pins["tsa_roots"]}; EVM blocks pinned: {sum(len(v) for v in pins["evm_blocks"].values())}.</p>
<h2>Keys pinned</h2><ul>{keys}</ul>
<h2>The log</h2><p>Log <code>{escape(log["origin"])}</code> at size {log["size"]:,}, root <code>{escape(log["root"])}</code>, checkpoint signed by a pinned key. {escape(log.get("tiles", "").capitalize())}.</p>
<pre>{escape(log["checkpoint"])}</pre>{witness_line}
{"<p>Consistency with the checkpoints you saved:</p><ul>" + consistency + "</ul>" if consistency else ""}
<h2>Counts per agency</h2><table><tr><th>agency</th><th>batches</th><th>records</th><th>valid batches</th><th>failed batches</th></tr>{agencies}</table>
{sample_line}
<h2>Anchoring delay</h2><p>Seconds from each batch's seal to the earliest time an external anchor (TSA, EVM) attests for it.</p>{plot(delays(doc))}
<h2>Findings</h2>{failures}
<h2>Batches</h2><table><tr><th>agency</th><th>batch</th><th>records</th><th>sealed</th><th>anchors verified (time attested)</th><th>outcome</th></tr>{bundles}</table>{more}
</body></html>
"""


def write_verdict(verdict: dict[str, Any], proof: str, pinned: str, folder: Path) -> tuple[Path, Path]:
    """The evidence report of one proof's verification (``anchorpipe verify --report``)."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": "anchorpipe.verification/1", "proof": proof, "pinned": pinned, **verdict}
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    ok = verdict["valid"]
    headline = {"valid": "VALID", "invalid": "INVALID", "not-anchored": "NOT VALID", "unusable": "CANNOT CHECK"}
    checks = "".join(f"<li>{escape(c)}</li>" for c in verdict["checks"])
    anchors = _rows([[escape(a["kind"]), escape(a["verdict"]), escape(a["time"] or ""), escape(a["detail"])]
                     for a in verdict["anchors"]])
    html_path.write_text(f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>anchorpipe verification of {escape(proof)}</title><style>{CSS}</style></head><body>
<h1>Verification of {escape(proof)}</h1>
<p class="{'ok' if ok else 'bad'}">{headline[verdict["outcome"]]}{": " + escape(verdict["message"]) if verdict["message"] else ""}</p>
<p>{"The record's content was checked against the proof." if verdict["content_checked"] else "The record's content was not checked (no record file given)."}</p>
<h2>What was pinned and required</h2><p>{escape(pinned)}</p>
<h2>Checks that held</h2><ol>{checks}</ol>
<h2>Anchors</h2><table><tr><th>kind</th><th>verdict</th><th>time attested</th><th>what it proved, or why not</th></tr>{anchors}</table>
</body></html>
""")
    return json_path, html_path
