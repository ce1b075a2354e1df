"""Cold-start AUC on the validation songs after every epoch, through `dcue score`'s metric code."""

import numpy as np


class Validator:
    """Cold-start AUC on the validation songs, through the same metric code as `dcue score`."""

    def __init__(self, data, valid_cache, *, similarity: str, user_vectors=None, crop_batch=1024, autocast=None,
                 artists=None):
        import scipy.sparse as sp
        import torch

        self.cache = valid_cache
        self.lengths = data.lengths[data.valid_items]
        self.rows = np.arange(len(data.valid_items))
        self.similarity = similarity
        self.fixed_users = user_vectors  # WMF users for the regression objective
        self.n_users = data.n_users
        self.crop_batch = crop_batch
        self.autocast = autocast
        # the artist index of each validation song (0: unknown), added as `embed` adds it
        self.artists = None if artists is None else torch.as_tensor(np.asarray(artists, np.int64))
        self.positives = sp.csr_matrix(
            (np.ones(len(data.valid_users), np.float32), (data.valid_users, data.valid_pair_items)),
            shape=(data.n_users, len(data.valid_items)))
        self.positives.sum_duplicates()
        n_pos = np.diff(self.positives.indptr)
        self.n_eval_users = int(((n_pos > 0) & (n_pos < len(data.valid_items))).sum())

    @property
    def possible(self) -> bool:
        return self.n_eval_users > 0 and len(self.rows) > 1

    def __call__(self, model) -> float:
        import torch

        from dcue_cli.crops import item_vectors
        from dcue_cli.evaluate.metrics import mean_auc
        from dcue_cli.model import all_user_vectors

        was_training = model.training
        model.eval()
        try:
            items = item_vectors(model.audio, self.cache, self.rows, self.lengths,
                                 batch_crops=self.crop_batch, autocast=self.autocast)
            with torch.no_grad():
                items = model.add_artists(items, self.artists)
            if self.fixed_users is not None:
                users = self.fixed_users
            else:
                users = all_user_vectors(model, self.n_users, next(model.parameters()).device)
            return mean_auc(users, items, self.similarity, self.positives)
        finally:
            model.train(was_training)
