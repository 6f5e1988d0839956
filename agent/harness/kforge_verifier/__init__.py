"""The kforge Verifier harness, run once per job by agent/harness/kforge_harness.py.

Modules (each small, each with its own contract):
  job         job.json -> JobSpec (defaults, validation)
  verdicts    verdict names and the Failure exception that carries one out of a stage
  result      atomic writes of DIR/stage and DIR/result.json; JSON sanitising
  errors      exception -> verdict classification, traceback trimming
  compare     the tolerance table and the output comparison (float64, on the host)
  rules       static (ast) checks on the candidate source
  trace       runtime tracing of framework ops during one forward call; integrity snapshot
  launches    counters proving that the candidate's forward launched its own kernel
  frameworks  torch / numpy / mindspore adapters (seeding, devices, copies, aliasing)
  timing      profiling methods (CPU perf_counter_ns, CUDA events + L2 flush, Ascend)
  runner      the stages: load_reference, load_candidate, precision, profile
"""

HARNESS_VERSION = "1"
