"""The optimizers: momentum SGD (Caffe's or PyTorch's), LARS, DATE, and their construction."""
