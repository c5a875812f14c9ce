"""Plots a user asks for: `run` (a run folder's curves; `hpcsgd plot run`) and `schedules`
(a job's LR and weight decay per iteration; `hpcsgd plot schedule`). Both need matplotlib
(Agg backend), imported only here, never by the trainer."""
