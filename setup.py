"""fairjax: measuring and mitigating demographic bias in deep image models, in JAX."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "ml_collections>=1.0",
    "absl-py>=2.0",
    "numpy>=2.0",
    "pandas>=2.2",
    "matplotlib>=3.9",
    "pillow>=10.0",
    "tensorflow-datasets>=4.9.10",
    "importlib_resources",  # TFDS needs it to prepare any data set, but does not declare it
    "transformers>=5.0",
    "safetensors>=0.4",
    "grain>=0.2.12",
    # Training logs: TensorBoard event files from tensorboard's pure-Python protos and record framing
    # (fairjax.train.events, no TensorFlow import). TFDS needs TensorFlow to build the image data sets.
    "tensorboard>=2.16",
    "tensorflow-cpu>=2.16",
    "tqdm>=4.66",
    "scikit-image>=0.22",  # LIME's superpixels (fairjax.explain.lime), as the reference lime segments
]

EXTRAS_REQUIRE = {
    # Reference oracles and the test runner. fairlearn / scikit-learn are only used to check our numbers;
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.6",  # --no-loadscope-reorder; two workers: the suite is compile- and import-bound
        "fairlearn>=0.13",
        "scikit-learn>=1.5",
        "scipy>=1.11",  # the exact linear program the equalized-odds frontier is tested against
        # fairjax.explain's oracles: the reference LIME and PAIR's saliency (integrated gradients, SmoothGrad)
        "lime==0.2.0.1",
        "saliency>=0.2.1",
        "torch==2.13.0",  # reference outputs for the weight importers; the CPU build on this machine's disk
        # EleutherAI's LEACE, the reference fairjax.erasure's port is checked against; it needs only torch
        "concept-erasure==0.2.4",
        # A gs:// workdir tested against a GCS server on localhost (tests/gcs_emulator.py), reached through
        # epath's fsspec backend. Users need neither: with TensorFlow installed epath uses tf.io.gfile.
        "gcsfs>=2026.9",
        "gcp-storage-emulator>=2024.8",
    ],
    # Accelerator builds of jaxlib, for pod and cluster hosts (see launch/).
    "tpu": ["jax[tpu]"],
    "cuda": ["jax[cuda12]"],
    # Peers measured beside fairjax by benchmarks/ (torch: the CPU build on this machine's disk).
    "bench": [
        "fairlearn>=0.13",
        "scikit-learn>=1.5",
        "torch==2.13.0",
    ],
}

setuptools.setup(
    name="fairjax",
    version="0.1.0",
    description="Group-fairness auditing and bias mitigation for deep image classifiers and CLIP, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["fairjax", "fairjax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
