# Two commands do all set-up on a fresh machine: `make demo` and `make test` install what they need, into a project
# virtual environment (.venv) made with the system's python3, so they work where that python is "externally managed"
# (PEP 668: Debian, Ubuntu) and never touch it. Every target below runs the venv's python.
PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0 (CPU build) lies on this machine's disk; the importer needs no torchvision.
TORCH ?= torch==2.13.0
EXTRAS := harden,test,demo,ray,saas,plot,detection,images
# Inside the venv, so that `make clean` (or deleting .venv) means a reinstall; pyproject.toml newer: reinstall.
STAMP := $(VENV)/.installed
# The external data sets of the examples (docs/data.md says where each comes from): `make bench-gtsrb DATA=DIR`.
DATA ?= ../shared/data

.PHONY: install test demo docs bench bench-cifar bench-calibration bench-resnet20 bench-gtsrb bench-paper bench-pennfudan \
	bench-startup clean
install: $(STAMP)
$(PY):
	$(PYTHON3) -m venv $(VENV)
# ftcompile/__init__.py holds the version the editable install's metadata records: a new version reinstalls
$(STAMP): pyproject.toml ftcompile/__init__.py | $(PY)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $@

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) examples/mnist_lenet/demo.py

# Every generated doc: docs/cli.md from the typer app, benchmarks/RESULTS.md and the marked blocks of README.md and
# docs/ from the results JSON. tests/test_generated_docs.py fails while one is stale.
docs: install
	$(PY) tools/cli_reference.py --write
	$(PY) benchmarks/tables.py --write

# Every table and plot in README's benchmark section but CIFAR, about 50 minutes on 2 cores.
bench: install
	$(PY) benchmarks/bench_validate.py
	$(PY) benchmarks/bench_harden.py --seeds 3
	$(PY) benchmarks/bench_fidelity.py --seeds 3
	$(PY) benchmarks/bench_workers.py
	$(PY) benchmarks/bench_ablation.py
	$(PY) benchmarks/bench_methods.py

# Start-up of the CLI (`ftcompile --help`, a small validate) in fresh processes, with -X importtime; about a minute.
bench-startup: install
	$(PY) benchmarks/bench_startup.py

# The CIFAR-10 rows of Figure 3 (needs $(DATA)): about 75 minutes on 2 cores, so apart.
bench-cifar: install
	$(PY) examples/cifar_cnn/run.py --data $(DATA)
	$(PY) benchmarks/bench_methods.py --tasks cifar-cnn --reuse --samples 30

# One-hot against all-ones calibration reads of global compensation (needs the PennFudan examples' and
# ResNet-20's work folders, i.e. their prepare.py); a few minutes.
bench-calibration: install
	$(PY) benchmarks/bench_calibration.py

# ResNet-20 (the saved ERM models in benchmarks/models): default harden of the 85.73% Cutout model at sigma 0.3
# (about 40 minutes), the 19-site search comparison, the allocator ratio. Needs $(DATA); about 3 hours.
R20 := benchmarks/models/resnet20_cifar10_e160_cutout.onnx
bench-resnet20: install
	test -f examples/cifar_resnet20/work/train.npz || $(PY) examples/cifar_resnet20/prepare.py --data $(DATA)  # splits only: the model is saved
	$(PY) examples/cifar_resnet20/run.py --model $(R20) --results benchmarks/results/resnet20_e160_cutout.json --sigma 0.3
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_allocator.py

# GTSRB with a spatial transformer (Arcos-Garcia et al. 2018, reduced): ERM, then the default harden.
bench-gtsrb: install
	test -f examples/gtsrb_stn/work/train.npz || $(PY) examples/gtsrb_stn/prepare.py --data $(DATA)  # splits only: the model is saved
	$(PY) examples/gtsrb_stn/run.py --test-size 2000

# The paper's Figure 3 on ResNet-20 (the saved 50-epoch ERM model, sigma 0.2) and the GTSRB STN network (sigma 0.3):
# every method at the CPU budget flags, signed off on a 2,000-image test subset, then ERM and every hardened model
# swept over sigma 0-1.5 (results/*_figure3.png). Needs $(DATA); over 4.5 hours (the measured runs it repeats).
BUDGET := --trials 8 --epochs 1 --trial-fraction 0.1 --final-epochs 10 --rate-space per-stage --samples 10 --validate-samples 20
METHODS := noise-injection,bayesft,bayesft+noise,fixed-dropout,ftna,awp
bench-paper: install
	test -f examples/cifar_resnet20/work/train.npz || $(PY) examples/cifar_resnet20/prepare.py --data $(DATA)  # splits only
	$(PY) examples/cifar_resnet20/run.py --sigma 0.2 --test-size 2000 --methods $(METHODS) --flags "$(BUDGET) --lr 5e-4" \
		--sweep-samples 10
	test -f examples/gtsrb_stn/work/train.npz || $(PY) examples/gtsrb_stn/prepare.py --data $(DATA)  # splits only
	$(PY) examples/gtsrb_stn/run.py --sigma 0.3 --test-size 2000 --methods $(METHODS) --flags "$(BUDGET)" --sweep-samples 10

# PennFudan pedestrians as segmentation (a small U-Net trained here): ERM, auto, bayesft, bayesft+noise; then both
# networks at the sigma where their ERM curve crosses half its clean metric, three seeds of the default (60 epochs,
# what --final-epochs auto gives on PennFudan, given by hand so the keys match the measured runs beside the 15-epoch
# ones) and the detector's flags: training noise 0.3 and 0.35 (30 final epochs), 0.35 alone, seeds 0-4, and on
# seed 0 0.4 and 0.35 without the blend, for the measured crossing 0.25. With two jobs sharing the cores the U-Net's
# crossing runs took about 40 minutes and the detector's 3 (60 epochs) + 17 runs of 4-10 minutes.
bench-pennfudan: install
	test -f examples/pennfudan_unet/work/unet.onnx || $(PY) examples/pennfudan_unet/prepare.py --data $(DATA)/pennfudan
	$(PY) examples/pennfudan_unet/run.py
	for s in 0 1 2; do $(PY) examples/pennfudan_unet/run.py --at crossing --methods auto --no-sweep \
		--flags "--final-epochs 60 --seed $$s" --out benchmarks/results/pennfudan_unet.crossing.json; done
	test -f examples/pennfudan_det/work/detector.pt || $(PY) examples/pennfudan_det/prepare.py --data $(DATA)/pennfudan --threads 2
	for s in 0 1 2; do $(PY) examples/pennfudan_det/run.py --at crossing --methods auto --no-sweep \
		--flags "--final-epochs 60 --seed $$s" --out benchmarks/results/pennfudan_det.crossing.e60.json; done
	for s in 0 1 2 3 4; do for f in "--train-sigma 0.3 --final-epochs 30" "--train-sigma 0.35 --final-epochs 30" \
		"--train-sigma 0.35"; do $(PY) examples/pennfudan_det/run.py --at crossing --methods auto --no-sweep \
		--flags "$$f --seed $$s" --out benchmarks/results/pennfudan_det.crossing.ts.json; done; done
	for f in "--train-sigma 0.4 --final-epochs 30" "--train-sigma 0.35 --final-epochs 30 --blend off"; do \
		$(PY) examples/pennfudan_det/run.py --at crossing --methods auto --no-sweep \
		--flags "$$f --seed 0" --out benchmarks/results/pennfudan_det.crossing.ts.json; done
	$(PY) examples/pennfudan_det/val_read.py  # the runtime's validation read beside the torch objective, 4 minutes

clean:
	rm -rf $(VENV) .make build examples/*/work benchmarks/work
