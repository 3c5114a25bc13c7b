# Two commands do all set-up on a fresh machine: `make demo` and `make test` install what they need.
PY ?= python3
# torch 2.13.0 (CPU build) lies on this machine's disk; the importer needs no torchvision.
TORCH ?= torch==2.13.0
STAMP := .make/installed

.PHONY: install test demo bench bench-cifar clean
install: $(STAMP)
$(STAMP): pyproject.toml
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[harden,test,demo,ray]'
	@mkdir -p .make && touch $@

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) examples/mnist_lenet/demo.py

# Every table and plot in README's benchmark section but CIFAR, about 35 minutes on 2 cores.
bench: install
	$(PY) benchmarks/bench_validate.py
	$(PY) benchmarks/bench_harden.py --seeds 3
	$(PY) benchmarks/bench_workers.py
	$(PY) benchmarks/bench_ablation.py
	$(PY) benchmarks/bench_methods.py

# The CIFAR-10 rows of Figure 3 (needs ../shared/data or --data): about 75 minutes on 2 cores, so apart.
bench-cifar: install
	$(PY) examples/cifar_cnn/run.py
	$(PY) benchmarks/bench_methods.py --tasks cifar-cnn --reuse --samples 30

clean:
	rm -rf .make examples/*/work benchmarks/work
