"""tools/fuzz_records.py for 1,000 cases (30-50 s on the loaded 2-core machine, mostly the
child's start-up): every damaged record is a sample or a RecordError (counted and skipped),
never another exception, a crash or a hang. The committed run of 100,000 cases is in
docs/reliability.md."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fuzzed_records_are_samples_or_record_errors():
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_records.py"),
                          "--cases", "1000", "--seed", "1", "--max-image-pixels", "4000000",
                          "--case-limit", "30", "--other-formats"],
                         capture_output=True, text=True, timeout=900, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # this tree's hpcsgd
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = {m[0]: [int(x) for x in m[1:7]] for m in re.findall(
        r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", res.stdout, re.M)}
    cases, valid, corrupt, violation, crash, hang = rows["all"]
    assert cases == 1000 and (violation, crash, hang) == (0, 0, 0), res.stdout
    assert valid > 0 and corrupt > 0
    # every mutation ran, and the undamaged control records all came out as samples
    assert len(rows) == 14, sorted(rows)
    assert rows["none"][1] == rows["none"][0] > 0
    assert rows["image_header"][2] > 0  # lying headers refused
