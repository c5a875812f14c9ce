"""Learning-rate, weight-decay and augmentation schedules as pure functions of the iteration."""
