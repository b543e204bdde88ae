"""The README's governance commands run as written: DSAR (open on stdin, confirm by a second admin,
run, export and open-bundle) and retention (dry run, then a refused unconfirmed run).

The commands are read from the README's code block and only its placeholders are filled in (T, ID,
out, the actors), so a README that drifts from the CLI fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import governed_copy

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(prefix: str) -> list[list[str]]:
    """The README's ``ccpipe <prefix> ...`` example lines, split like a shell would (comments dropped)."""
    out = []
    for line in README.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(f"ccpipe {prefix} "):
            out.append(shlex.split(stripped, comments=True))
    assert out, f"the README has no 'ccpipe {prefix}' example"
    return out


def run(argv: list[str], common: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccpipe.cli", *argv[1:], *common], input=stdin,
                          capture_output=True, text=True)


def fill(argv: list[str], **values: str) -> list[str]:
    return [values.get(a, a) for a in argv]


def test_readme_dsar_and_retention_examples(batch_run, corpus, tmp_path):
    cp, keystore, out, tenants = governed_copy(batch_run, corpus, tmp_path, f"sqlite:///{tmp_path / 'control.db'}")
    common = ["--control-plane", cp.url, "--keystore", keystore._config.path,
              "--master-key-file", keystore._config.master_key_file]
    cp.close()
    row = next(json.loads(line) for line in (corpus / "input" / "calls.jsonl").read_text().splitlines())
    tenant, phone = row["tenant_id"], row["calling_number"]

    dsar = {argv[2]: argv for argv in readme_commands("dsar")}
    assert {"open", "confirm-identity", "run"} <= set(dsar)
    opened = run(fill(dsar["open"], T=tenant), common, stdin=phone + "\n")
    assert opened.returncode == 0, opened.stderr
    request_id = opened.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    confirmed = run(fill(dsar["confirm-identity"], ID=request_id, T=tenant), common)
    assert confirmed.returncode == 0, confirmed.stderr
    served = run(fill(dsar["run"], ID=request_id, T=tenant, out=str(out)), common)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["rows_removed"] > 0  # the README's example is a deletion

    # The same identifier typed on the command line is refused (shell history), as is a bad e-mail.
    literal = run(["ccpipe", "dsar", "open", "--tenant", tenant, "--kind", "access", "--subject-kind", "phone",
                   "--subject", phone, "--actor", "adm", "--role", "customer_admin", "--actor-tenant", tenant], common)
    assert literal.returncode != 0 and "standard input" in literal.stderr and phone not in literal.stderr
    bad = run(["ccpipe", "dsar", "open", "--tenant", tenant, "--kind", "access", "--subject-kind", "email",
               "--subject", "-", "--actor", "adm", "--role", "customer_admin", "--actor-tenant", tenant], common,
              stdin="not-an-email\n")
    assert bad.returncode != 0 and "not an e-mail address" in bad.stderr and "not-an-email" not in bad.stderr

    # Export and open-bundle, passphrase from a file.
    admin = ["--actor", "adm", "--role", "customer_admin", "--actor-tenant", tenant]
    second = ["--actor", "adm2", "--role", "customer_admin", "--actor-tenant", tenant]
    subject_file = tmp_path / "subject.txt"
    subject_file.write_text(row["agent_id"] + "\n")
    export_id = run(["ccpipe", "dsar", "open", "--tenant", tenant, "--kind", "export", "--subject-kind", "agent_id",
                     "--subject-file", str(subject_file), *admin], common).stdout.strip()
    assert run(["ccpipe", "dsar", "confirm-identity", "--request", export_id, "--method", "HR ticket", *second],
               common).returncode == 0
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("correct horse battery staple\n")
    bundle, opened_json = tmp_path / "bundle.ccx", tmp_path / "report.json"
    exported = run(["ccpipe", "dsar", "run", "--request", export_id, "--output", str(out), "--out", str(bundle),
                    "--passphrase-file", str(passphrase), *admin], common)
    assert exported.returncode == 0, exported.stderr
    assert row["agent_id"].encode() not in bundle.read_bytes()
    unsealed = run(["ccpipe", "dsar", "open-bundle", "--in", str(bundle), "--request", export_id, "--out",
                    str(opened_json), "--passphrase-file", str(passphrase), *admin], common)
    assert unsealed.returncode == 0, unsealed.stderr
    assert json.loads(opened_json.read_text())["request_id"] == export_id

    retention = [fill(argv, out=str(out)) for argv in readme_commands("retention")]
    dry = run(retention[0], common)
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout, dry.stderr
