"""lic: the in-repo learned image codec (model, bitstream, training, the codec adapter).

Everything here imports only torch, compressai, numpy and Pillow, so that training runs on a GPU
machine where the traditional codec libraries are not installed.
"""
