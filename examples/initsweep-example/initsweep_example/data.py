import numpy as np


def blobs(n=600, classes=3, features=10, seed=0):
    """n points in `classes` Gaussian blobs of unit variance around centres drawn from N(0, 3^2)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, features))
    y = np.arange(n) % classes
    x = centres[y] + rng.normal(size=(n, features))
    return x.astype(np.float32), y
