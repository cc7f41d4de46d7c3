"""The version of the package ``tds`` (tds_kernels and tdsclip): the one place it is written.

setup.py reads this line (without importing tds_kernels) and adds the local part naming the torch and
kernels a build was made for (``0.1.0+torch2.14cpu``); ``importlib.metadata.version("tds")`` gives
that full version of an installed build.
"""
__version__ = "0.1.0"
