"""mammalnet: a Keras 3 / TensorFlow toolkit for marine mammal bioacoustics."""

__version__ = "0.1.0"
