"""Numerical building blocks shared by the models (convolution that trains fast on CPU)."""
