"""Training the deep content-user embedding model (and the WMF+Regression baseline).

    config.py       TrainConfig, the files beside -o, what a resume may change
    data.py         mels, plays and splits joined into integer arrays
    sampling.py     each step's batch, a function of (seed, epoch, step, rank)
    objectives.py   the loss of a batch: hinge, sampled softmax, regression
    validate.py     cold-start AUC on the validation songs
    setup.py        the pieces a run is built from
    state.py        the training state as a checkpoint and back
    distributed.py  several processes under torchrun
    loop.py         Trainer: the epochs
    run.py          run_train: files in, a trained model and a report out (what `dcue train` calls)
"""
