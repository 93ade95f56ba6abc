# Benchmarks (issue #3). Data is cached in $$AUDIODUP_BENCH_DATA (default ~/.cache/audiodup-bench).
PYTHON ?= python
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-smoke bench-scale

bench:  ## full suite: every variant on every track, report in benchmarks/RESULTS.md
	$(PYTHON) -m benchmarks run $(BENCH_ARGS)

bench-quick:  ## ~12 works, ~6 negatives, 15 variants; a few minutes
	$(PYTHON) -m benchmarks run --quick $(BENCH_ARGS)

bench-smoke:  ## bundled fixtures only, well under a minute (what CI runs)
	$(PYTHON) -m pytest -q benchmarks/test_smoke.py

bench-scale:  ## full suite plus catalog-size scaling to 10,000 works (slow)
	$(PYTHON) -m benchmarks run --scale $(BENCH_ARGS)
