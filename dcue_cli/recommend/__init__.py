"""Recommendations from an embeddings file: top-k items for many users, new users folded in.

    topk.py     chunked exact top-k (exclusion masks, candidate restriction; torch, GPU when present)
    foldin.py   vectors for users the model does not know, from the items they played
    queries.py  the ad-hoc `score --user/--item` look-ups, on the same top-k code
    run.py      `run_recommend`: the `dcue recommend` command's work, streaming TSV
"""
