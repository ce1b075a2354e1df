"""Evaluation: how well vectors rank held-out songs for users (what `dcue score` runs).

    metrics.py    AUC and precision/recall/nDCG/MAP at k, exact (ties by expectation), in chunks
    stats.py      bootstrap intervals over users, the paired Wilcoxon test
    protocols.py  the cold-start and warm tasks, popularity, vectors aligned to a task
    report.py     the table, the per-user TSV, unique row names
    plots.py      per-user AUC distributions and mean ROC curves (optional matplotlib)
    score.py      run_score: files in, a report out
"""
