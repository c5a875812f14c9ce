"""Data set converters into Caffe-Datum LMDBs (the trainer's input, hpcsgd/store):
`fashion_mnist` (IDX files -> raw 28x28 records; `hpcsgd convert fashion-mnist`) and
`imagenet` (an ImageNet-style folder -> encoded JPEG records; `hpcsgd convert imagenet`)."""
