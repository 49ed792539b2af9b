"""The kernel runtime: a workload's compiled, disk-cached kernel, picked from the database's records."""
