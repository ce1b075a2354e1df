"""Auto-tagging as a probe of item vectors: how much musical meaning do they carry?

The paper's second task (Lee et al. 2018, Table 2): a small network on each model's item
vectors predicts the most used tags; the mean per-tag ROC-AUC on the test items says how
well the vectors encode what listeners call the music. No click in here; one module a job:

    dataset    map_track_ids, prepare_dataset: labels (the top tags), the items taking part,
               their splits (a file, or `dcue_cli.random_split.split_ids`)
    metrics    per_tag_auc, per_tag_ap: exact per-tag metrics (ties counted as sklearn does)
    tagger     train_tagger: the MLP, early-stopped on the valid items
    report     evaluate_embeddings (one embeddings file -> one row), the table, per-tag rows,
               top_predictions for `--predict`
    run        run_autotag: read, check, label, train per file, write; what `dcue autotag` calls

The tag files themselves are read in `dcue_cli.io.tags`.
"""
