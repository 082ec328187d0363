// Written by the sha256 kernels' author.
