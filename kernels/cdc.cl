// Written by the cdc kernels' author.
