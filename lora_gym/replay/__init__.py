"""Record -> replay: the step store, the table index, the surrogate, the recording wrapper."""
