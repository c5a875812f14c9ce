"""hpcsgd affinity plan|tune|compare as a user runs them: the plan uses the job's rank count
(and says where it came from), long CPU lists are wrapped so that every printed command pastes
into a shell as exactly the launcher's syntax, and tune and compare run for real on this node
(a tiny workload, one round)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mpi4py import MPI

from hpcsgd.affinity.cli import main
from hpcsgd.affinity.launch import launcher_flags, ranks_in_launch_line, shell_lines
from hpcsgd.affinity.planner import PRESETS, plan_node
from helpers import tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
PAPER_JOBS = sorted((ROOT / "jobs").glob("stampede2/*.toml")) + sorted(
    (ROOT / "jobs").glob("marenostrum4/*.toml"))
launches_mpiexec = pytest.mark.skipif(MPI.COMM_WORLD.size > 1 or MPIEXEC is None,
                                      reason="launches its own mpiexec (not from inside one)")


@pytest.fixture
def plan(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)

    def run(*args):
        code = main(["plan", *map(str, args)])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_the_local_job_is_planned_for_its_4_ranks(plan):
    code, out, _ = plan("--config", "jobs/local/fashion_mnist.toml")
    assert code == 0
    assert ("ranks: 4 = 4 per node x 1 node(s), from the launch line in "
            "jobs/local/fashion_mnist.toml: mpiexec -n 4") in out
    assert "mpiexec -n 4 -ppn 4 " in out and "mpiexec -n 1 " not in out
    assert "plan, 4 rank(s) per node" in out


def test_a_job_that_does_not_say_takes_ranks_from_the_command_line(plan, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("[train]\nglobal_batch = 60\n")
    code, out, _ = plan("--config", job)
    assert code == 0 and "the job does not say: give --ranks N" in out
    code, out, _ = plan("--config", job, "--ranks", 3)
    assert code == 0 and "ranks: 3 = 3 per node x 1 node(s), from --ranks" in out
    assert "mpiexec -n 3 -ppn 3 " in out
    code, _, err = plan("--config", job, "--ranks", 3, "--nodes", 2)
    assert code == 2 and err.strip() == ("hpcsgd affinity plan: refused: --ranks 3 over 2 "
                                         "nodes: not divisible")


@pytest.mark.parametrize("job", PAPER_JOBS, ids=lambda p: p.stem)
def test_no_printed_line_of_a_paper_job_runs_past_200_characters(plan, job):
    code, out, _ = plan("--config", job.relative_to(ROOT))
    assert code == 0
    longest = max(out.splitlines(), key=len)
    assert len(longest) <= 200, longest


def _printed_command(out: str, section: str, label: str) -> str:
    """One launcher's command as a user copies it from the output: from after the label to
    its last continuation line, every line as printed."""
    lines = out[out.index(section):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label:9s} "))
    text = [lines[start][12:]]
    for line in lines[start + 1:]:
        if not text[-1].endswith("\\"):
            break
        text.append(line)
    return "\n".join(text)


@pytest.mark.parametrize("launcher", ["srun", "mpich", "intelmpi", "openmpi"])
def test_a_wrapped_knl_command_pastes_as_the_exact_launcher_syntax(plan, launcher):
    job = "jobs/stampede2/tableii_row1_b8192_n256_e90.toml"
    _, out, _ = plan("--config", job)
    text = _printed_command(out, "launch on", launcher)
    assert len(text.splitlines()) > 1                    # it was wrapped
    # the shell reads the printed lines; printf shows the words it passes to the launcher
    words = subprocess.run(["bash", "-c", "printf '%s\\n' " + text.split(" ", 1)[1]],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    knl = plan_node(PRESETS["knl-7250"].topology, ranks=1, preset="knl-7250")
    expected = launcher_flags(knl, nodes=256, program=f"python -m hpcsgd.train {job} "
                                                      "--checkpoint.resume=auto")[launcher]
    assert [text.split(" ", 1)[0], *words] == expected.split()


def test_shell_lines_keep_a_long_value_exact():
    value = "+".join(map(str, range(272)))
    lines = shell_lines(["mpiexec", "-bind-to", f"user:{value}", "KEY=" + value, "python"],
                        width=96)
    assert all(len(line) <= 98 for line in lines)
    assert not any(re.search(r"\d\\$", line) and not line.endswith("+\\") for line in lines[1:-1]
                   if '"' in line)  # cut after a separator, never inside a CPU id
    words = subprocess.run(["bash", "-c", "printf '%s\\n' " + "\n".join(lines)],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert words == ["mpiexec", "-bind-to", f"user:{value}", "KEY=" + value, "python"]


@pytest.mark.parametrize("text, ranks", [
    ("# job\n#   mpiexec -n 4 .venv/bin/python -m hpcsgd.train j.toml\n", 4),
    ("#   mpirun -np 16 python -m hpcsgd.train j.toml\n", 16),
    ("#   srun --nodes=2 --ntasks=8 python -m hpcsgd.train j.toml\n", 8),
    ("#   srun -n 6 python x\n", 6),
    ("#   sbatch jobs/x.sbatch\n[train]\nepochs = 1\n", None),
    ("[run]\nname = 'mpiexec -n 3'\n", None),             # not a comment: not a launch line
])
def test_ranks_in_launch_line(text, ranks):
    found = ranks_in_launch_line(text)
    assert (found[0] if found else None) == ranks


@launches_mpiexec
def test_tune_measures_the_layouts_of_one_rank_for_real(tmp_path, capsys):
    results, snippet = tmp_path / "tune.jsonl", tmp_path / "best.toml"
    # one layout (--only default): each is a fresh mpiexec + torch start, slow on a busy node
    code = main(["tune", "--ranks", "1", "--buckets", "--only", "default",
                 "--model", "cifar_resnet20",
                 "--image-size", "32", "--batch", "4", "--warmup", "1", "--steps", "2",
                 "--budget-s", "0", "--results", str(results), "--snippet", str(snippet),
                 "--max-foreign", "1.0", "--quiet-wait-s", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["name"] for r in records] == ["default"] and records[0]["ok"], records
    assert "ranked layouts" in out and "1 rank(s): default" in out
    assert snippet.read_text().startswith("# Best core layout measured by: hpcsgd affinity tune "
                                          "--ranks 1 --buckets --only default --model")
    assert main(["tune", "--ranks", "1", "--only", "nonsense"]) == 2


@launches_mpiexec
def test_compare_trains_pinned_and_unpinned_for_real(tmp_path, capsys):
    tiny_dataset(tmp_path / "data")
    job = tmp_path / "job.toml"
    job.write_text(f'[data]\npath = "{tmp_path / "data"}"\naugment = false\n'
                   '[train]\nepochs = 1.0\nglobal_batch = 64\n[compute]\nthreads = 1\n')
    code = main(["compare", "--job", str(job), "--ranks", "1", "--steps", "3", "--rounds", "1",
                 "--max-foreign", "1.0", "--quiet-wait-s", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"round 1: pin = true +\d+ img/s", out)
    assert re.search(r"round 1: pin = false +\d+ img/s", out)
    assert "all runs: pinned" in out and "pinned / unpinned = " in out
