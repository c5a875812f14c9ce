"""The banner's rank -> host:pid table, by which a launcher's "PID n" report of a dead process
(a SIGKILLed rank prints nothing itself) is read as a rank."""
from hpcsgd.run.trainer import PID_TABLE_RANKS, _pid_table


def test_every_rank_is_listed_with_its_host_and_pid():
    assert _pid_table(["a:11", "b:12", "a:13"]) == "rank=host:pid 0=a:11 1=b:12 2=a:13"
    assert _pid_table(None) == ""  # the other ranks print nothing


def test_a_large_job_lists_the_first_ranks_and_says_where_the_rest_are():
    text = _pid_table([f"n{r}:{100 + r}" for r in range(PID_TABLE_RANKS + 10)])
    assert f"{PID_TABLE_RANKS - 1}=n{PID_TABLE_RANKS - 1}:" in text
    assert f" {PID_TABLE_RANKS}=n" not in text
    assert f"({PID_TABLE_RANKS + 10} ranks: all in metrics.jsonl's start record)" in text
