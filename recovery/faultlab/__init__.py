"""The fault lab: machinery of the fault campaigns that prove "never lose an acknowledged join".

Not used by the service. The campaigns (`campaigns`) run the real service and recovery code against kill
-9, power loss, damaged files and lost disks; `tests/recovery/` runs them as tests and
`python -m benchmarks.faults` as a benchmark. `child` is the process the kill -9 campaign kills; `synthetic`
writes big realistic logs fast.
"""
