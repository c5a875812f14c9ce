"""Calibration honesty (only the stated rows move the parameters) and job-file handling."""
import dataclasses
import json

import pytest

from hpcsgd.scaling.calibration import (MN4_CALIBRATION_CPUS, STAMPEDE2_CALIBRATION,
                                        calibrate_marenostrum4, calibrate_stampede2)
from hpcsgd.scaling.hardware import this_machine
from hpcsgd.scaling.jobs import Job, clusters, predict, read_job
from hpcsgd.scaling.paper import TABLE_V, TABLE_VI, TABLE_VII


def _params(cluster):
    return (cluster.node.images_per_s, cluster.node.batch_overhead_images,
            cluster.software.scaleout_s_per_doubling)


def _perturbed(rows, keep):
    """Every row not in `keep` moved by 30%: a fit that used it would move too."""
    return tuple(r if keep(r) else dataclasses.replace(r, seconds=r.seconds * 1.3) for r in rows)


def test_stampede2_parameters_depend_only_on_the_calibration_rows():
    base = _params(calibrate_stampede2())
    cal = set(STAMPEDE2_CALIBRATION)
    moved = _perturbed(TABLE_V, lambda r: (r.local_batch, r.nodes) in cal)
    assert _params(calibrate_stampede2(moved)) == pytest.approx(base)
    # and a calibration row does move them
    moved = _perturbed(TABLE_V, lambda r: (r.local_batch, r.nodes) != (16, 1024))
    assert _params(calibrate_stampede2(moved)) != pytest.approx(base)


def test_marenostrum4_rate_comes_from_the_512_cpu_row_only():
    s2 = calibrate_stampede2()
    base = calibrate_marenostrum4(s2).node.images_per_s
    moved = _perturbed(TABLE_VI, lambda r: r.cpus == MN4_CALIBRATION_CPUS)
    assert calibrate_marenostrum4(s2, moved).node.images_per_s == pytest.approx(base)
    # Table VII (time to train) is never an input
    assert all(r.table == "VI" for r in TABLE_VI) and all(r.table == "VII" for r in TABLE_VII)


def test_calibration_reproduces_its_own_rows():
    s2 = calibrate_stampede2()
    from hpcsgd.scaling.model import epoch_seconds
    for r in TABLE_V:
        if (r.local_batch, r.nodes) in set(STAMPEDE2_CALIBRATION):
            assert epoch_seconds(s2, r.local_batch, r.nodes) == pytest.approx(r.seconds, rel=1e-6)


def test_too_few_calibration_rows_are_refused():
    with pytest.raises(ValueError, match="3 calibration rows"):
        calibrate_stampede2(use=((16, 256), (32, 256)))


def _write_job(path, **cluster):
    lines = ["[cluster]"] + [f"{k} = {json.dumps(v)}" for k, v in cluster.items()]
    lines += ["[train]", "global_batch = 49152", "epochs = 100", "eval_every_epochs = 10.0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_job_file_gives_the_same_time_as_the_parameters(tmp_path):
    job = read_job(_write_job(tmp_path / "knl.toml", node_type="knl-7250", nodes=1536,
                              ranks_per_node=1))
    assert (job.local_batch, job.evaluations) == (32, 10)
    known = clusters(None)
    inline = Job("knl-7250", 1536, 1, 49152, 100, evaluations=10)
    assert predict(job, known)["total_s"] == pytest.approx(predict(inline, known)["total_s"])


def test_bad_job_files_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="nodes is missing"):
        read_job(_write_job(tmp_path / "a.toml", node_type="knl-7250"))
    with pytest.raises(ValueError, match="not divisible"):
        read_job(_write_job(tmp_path / "b.toml", node_type="knl-7250", nodes=1000))
    job = read_job(_write_job(tmp_path / "c.toml", node_type="gpu-9000", nodes=1536))
    with pytest.raises(ValueError, match="gpu-9000"):
        predict(job, clusters(None))


def test_this_machine_reads_the_measurement_json(tmp_path):
    r, b0, stream = 5.0, 2.0, 50.0
    update = 5 * 4 * 25_557_032 / (stream * 1e9)
    data = {
        "machine": {"cpu": "test", "cores": 2},
        "compute": {"threads": 2, "stream_GBps": stream, "gamma_s_per_byte": 1e-10,
                    "rows": [{"local_batch": b, "step_s": (b + b0) / r + update}
                             for b in (4, 8, 16)]},
        "allreduce": {"ranks": 2, "transport": "shm", "alpha_s": 3e-6,
                      "beta_eff_s_per_byte": 4e-10}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    node, net = this_machine(path)
    assert (node.images_per_s, node.batch_overhead_images) == pytest.approx((r, b0))
    # p = 2: beta_eff = beta + gamma / 2
    assert net.inter.beta == pytest.approx(4e-10 - 0.5e-10)
    assert "this-machine" in clusters(path)


def test_a_relative_error_that_rounds_to_zero_prints_without_a_sign_flip():
    # the committed docs/scaling.md read "+0.0%" where another CPU's last bit made the same
    # calibration row's error a tiny negative number, "-0.0%": the regenerated document must
    # not depend on the sign of an error that rounds to zero
    from hpcsgd.scaling.report import pct
    assert pct(-1e-9) == pct(1e-9) == pct(0.0) == "+0.0%"
    assert pct(-0.0004) == "+0.0%" and pct(-0.0006) == "-0.1%" and pct(0.0123) == "+1.2%"
    assert pct(None) == "-"


def test_the_calibration_solve_is_exact_so_every_machine_prints_the_same_document():
    # LAPACK's lstsq differs in the last bit between machines and BLAS builds; docs/scaling.md
    # printed a prediction of ~24.25 s as 24.2 on one machine and 24.3 on another. The solve
    # is exact (rational arithmetic), then rounded once: the correctly rounded solution.
    from fractions import Fraction

    from hpcsgd.scaling.calibration import exact_least_squares
    design, y = [[16, 1.0, 0.0], [32, 1.0, 0.0], [16, 1.0, 2.0]], [0.61, 1.07, 0.83]
    f = [Fraction(v) for v in y]
    inv_rate = (f[1] - f[0]) / 16  # the exact solution of this square system
    want = [float(inv_rate), float(f[0] - 16 * inv_rate), float((f[2] - f[0]) / 2)]
    assert exact_least_squares(design, y) == want  # numpy's lstsq: 0.15 for 0.1499999999999999
    # an over-determined system: the least-squares solution of y = 2 x + 1 + noise
    xs, ys = [0.0, 1.0, 2.0, 3.0], [1.0, 3.5, 4.5, 7.0]
    slope, icpt = exact_least_squares([[x, 1.0] for x in xs], ys)
    assert (slope, icpt) == (1.9, 1.15)
    with pytest.raises(ValueError, match="rank"):
        exact_least_squares([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="not finite"):
        exact_least_squares([[1.0, 0.0], [0.0, 1.0]], [1.0, float("nan")])
    with pytest.raises(ValueError, match="2 design rows for 1 values"):
        exact_least_squares([[1.0], [2.0]], [1.0])
