"""The experiment set that tests the papers' large-batch claims (docs/results.md): a developer
command, not part of the installed package. Run from the repository's root:

    .venv/bin/python -m tools.experiments --plan       # the runs, their order and cost
    .venv/bin/python -m tools.experiments [--quick]    # run what is missing, then report

    plan.py      which runs test which claim, in priority order (pure)
    budget.py    what a planned run costs and does (time, steps, LR x weight decay)
    sweep.py     a swept value's grid and its best run (chosen on the validation split)
    run.py       the driver: runs one experiment at a time, resumes a set cut short (a
                 training run cut short goes on from its newest epoch checkpoint)
    verdicts.py  the verdict rules
    claims.py    one report section per claim: claims 1-4, and what the sections share
    claims_codreanu.py  Codreanu et al.'s claims 5 and 6
    claims_lm.py        claim 7, the LSTM on the Penn Treebank
    plots.py     the report's figures
    report.py    docs/results.md
"""
