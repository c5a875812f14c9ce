"""Record storage: Caffe Datum records, LMDB stores, IDX files."""
