"""Benchmark suite for audiodup (issue #3).

Pipeline, one module per stage::

    corpus (Debian music packages -> manifest, seeded split)
      -> alterations (pedalboard/soxr variants with their true parameters)
      -> queries (render + cache every altered upload as 22050 Hz mono FLAC)
      -> engine (audiodup Catalog, or any object with the same interface)
         + peer_chromaprint (fpcalc + AcoustID-style best-offset bit error rate)
      -> metrics -> report + plots
    scaling (latency / false positives as the catalog grows, behind --scale)

Entry point: ``python -m benchmarks run [--quick | --smoke] [--out FILE] [--data DIR]``.
"""

SAMPLE_RATE_HZ = 22050
"""Every rendered query is stored as mono FLAC at this rate."""
