"""Audio files -> log-mel spectrograms: the `dcue melspec` stage, without click.

    decode.py   a file -> mono float32 at the configured rate (libsndfile, soxr HQ); clip checks
    logmel.py   FeatureConfig; the Slaney filterbank, the log-mel on numpy (`log_mel`) and torch
    stored.py   features -> their stored dtype (the fast float16 conversion, the range check)
    clip.py     one file -> its Outcome (decode, check, log-mel, store): `process`, `compute`
    pool.py     worker processes over many files, results in input order, surviving crashes
    extract.py  `extract_many`: every file's Outcome, the STFT on a torch device if asked
    inputs.py   which files (folders, lists, stdin), their ids, shards
    melspec.py  `run_melspec`: what the output lacks, computed and written; its Report

The mels file itself (format, crash-safe writing, merging) is `dcue_cli.io.mels`.
"""
