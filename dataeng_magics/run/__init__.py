"""Running approved code: the executors that run it and the validation of what it wrote."""
