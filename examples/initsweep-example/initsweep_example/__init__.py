"""A research project that studies the initialization of its own model on its own data with initsweep."""
