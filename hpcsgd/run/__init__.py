"""The lifecycle of a training run: build, loop, meter, evaluate, save, stop, finish."""
