// Written by the tensor kernels' author.
