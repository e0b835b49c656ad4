"""Engine: from selections to planned cells, and running them on equal terms: the runner and its
executors (local, Ray), timing, memory, calibration, guards, probe references, the result store,
plugin loading, and the scaling sweep (`scaling/`)."""
