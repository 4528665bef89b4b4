# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run demo report-render docs docs-check layers-check test fuzz bench bench-smoke bench-tools services fmt-check clippy proto-lint proto-breaking nextest node-tools deploy-tools deploy-check help

help:
	@echo "make run         start the services in embedded mode (SQLite per service, in-process cache and bus)"
	@echo "make demo        start the suite, load a synthetic population and run the retention loop (retention-cli demo); the HTML report is target/demo/report.html"
	@echo "make report-render  the demo's HTML report in headless Chromium: fails on a console error; screenshot target/demo/report.png"
	@echo "make test        format, lint, proto lint and the whole test suite (needs PostgreSQL + Redis)"
	@echo "make proto-lint  buf lint over proto/ (proto-breaking: buf breaking against proto/BREAKING_BASE)"
	@echo "make bench       benchmarks (release build, PostgreSQL); results go in BENCHMARKS.md"
	@echo "make fuzz        cargo-fuzz targets for FUZZ_SECS seconds each (nightly toolchain)"
	@echo "make docs        regenerate the API reference (proto/retention/<ctx>/v1/README.md) from the protos"
	@echo "make deploy-check  build the Kubernetes overlays, validate them and scan manifests and Dockerfile"

run:
	$(CARGO) run -p retention-suite --bin retention

# The suite in the background on fresh embedded databases (target/demo), then
# `retention-cli demo` against it, which ends by writing the HTML report
# (target/demo/report.html); the suite stops when the demo ends.
# The suite takes make run's ports: with another suite on them the one started
# here could not bind and the CLI would load the demo into the other one, so
# the ports must be free, and the suite started here must still run at the end.
SUITE_PORTS := 50051 50052 50053 50054
define suite_ports_free
	@for p in $(SUITE_PORTS); do \
		if (exec 3<>/dev/tcp/127.0.0.1/$$p) 2>/dev/null; then \
			echo "$@: port $$p is taken (a suite already running, e.g. make run?); stop it first"; exit 1; \
		fi; \
	done
endef

demo:
	$(CARGO) build -p retention-suite --bins
	$(suite_ports_free)
	@rm -rf target/demo && mkdir -p target/demo
	@(cd target/demo && exec ../debug/retention > retention.log 2>&1) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	target/debug/retention-cli demo --html target/demo/report.html && \
	{ kill -0 $$pid 2>/dev/null || { echo "demo: the suite started here is not running (target/demo/retention.log)"; exit 1; }; }

# The demo's HTML report opened in a real browser: headless Chromium (the Debian
# package, installed when missing) driven by playwright-core (npm; it downloads
# no browser). Fails on any console error or warning, page error, request
# leaving the file or data block that is not JSON; keeps a screenshot
# (target/demo/report.png) and the print layout (target/demo/report.pdf), and
# renders an empty deployment's page (target/report-empty) the same way, then
# the page of that deployment with one customer and one purchase (single.html).
# The demo runs quietly at its default size (seconds on the debug build).
CHROMIUM ?= $(shell command -v chromium 2>/dev/null || echo /usr/bin/chromium)
report-render: node-tools
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if ! apt-cache show chromium >/dev/null 2>&1; then $(SUDO) apt-get update -qq || exit 1; fi && \
		$(SUDO) apt-get install -y -q chromium >/dev/null || exit 1; \
	fi
	@mkdir -p target && $(MAKE) --no-print-directory demo > target/demo.log 2>&1 || { tail -n 30 target/demo.log; exit 1; }
	CHROMIUM=$(CHROMIUM) node scripts/render_report.mjs target/demo/report.html target/demo/report.png target/demo/report.pdf
	@# A new deployment's page too: every section says what is missing.
	$(suite_ports_free)
	@rm -rf target/report-empty && mkdir -p target/report-empty
	@(cd target/report-empty && exec ../debug/retention > retention.log 2>&1) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	target/debug/retention-cli --quiet report --html target/report-empty/report.html > /dev/null && \
	printf 'id,display_name\nc-1,Li Lei\n' > target/report-empty/customers.csv && \
	printf 'customer_id,order_id,occur_time,amount,gross_margin\nc-1,o-1,%s,12000,3000\n' \
		"$$(date -u -d '3 days ago' +%Y-%m-%dT%H:%M:%SZ)" > target/report-empty/purchases.csv && \
	target/debug/retention-cli --quiet load csv --customers target/report-empty/customers.csv \
		--purchases target/report-empty/purchases.csv > /dev/null && \
	target/debug/retention-cli --quiet report --html target/report-empty/single.html > /dev/null && \
	{ kill -0 $$pid 2>/dev/null || { echo "report-render: the suite started here is not running (target/report-empty/retention.log)"; exit 1; }; }
	CHROMIUM=$(CHROMIUM) node scripts/render_report.mjs target/report-empty/report.html target/report-empty/report.png
	CHROMIUM=$(CHROMIUM) node scripts/render_report.mjs target/report-empty/single.html target/report-empty/single.png

test: services fmt-check layers-check proto-lint proto-breaking docs-check deploy-check clippy nextest report-render bench-smoke fuzz

# Every benchmark at a tiny size on the debug build nextest made: fails unless
# each ran and each target got a figure, so `make bench` works on a fresh clone.
bench-smoke: services bench-tools
	$(CARGO) build -q -p retention-segmentation
	BENCH_PYTHON=$(BENCH_VENV)/bin/python $(CARGO) run -q -p retention-bench --bin retention-bench -- --smoke

# Not part of `make test`: a release build and minutes of work per benchmark.
# BENCH_ONLY=grpc,fit (and BENCH_CUSTOMERS=..., see `retention-bench --help`)
# runs a part or a smaller population; BENCH_ONLY=scale (never in the default
# run) loads 10 million customers and scores them on segmentation processes.
bench: services bench-tools
	$(CARGO) build --release -p retention-bench -p retention-segmentation
	BENCH_PYTHON=$(BENCH_VENV)/bin/python ./target/release/retention-bench

# Coverage-guided fuzzing (cargo-fuzz, nightly toolchain) of each target in
# fuzz/ for FUZZ_SECS seconds, from the seeds in fuzz/seeds; fails on any crash
# (the input is left in fuzz/artifacts). cargo-fuzz comes from crates.io if missing.
# filter_parse: the filter parser. service_requests: any bytes as any RPC's
# request to the four services running in-process. event_payloads: any bytes as
# an event (a built envelope with any payload, or raw envelope bytes) on any
# stream, waited for until every consumer group applied or dead-lettered it.
# Unoptimised and without a sanitizer (safe Rust; panics are what is sought):
# one build of the services shared by the targets, minutes shorter. The
# services' background tasks make coverage noisy, so the two targets running
# them skip input reduction and entropic scheduling, which otherwise cost them
# 95% of their speed or more.
FUZZ_SECS ?= 30
FUZZ_TARGETS = filter_parse service_requests event_payloads
fuzz:
	@cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz: needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		extra=""; case $$t in service_requests|event_payloads) extra="-reduce_inputs=0 -entropic=0";; esac; \
		echo "fuzz: $$t" && mkdir -p fuzz/corpus/$$t && \
		(cd fuzz && cargo +nightly fuzz run --dev -s none $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECS) -print_final_stats=1 $$extra 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY|thread|error|Error)|panicked|INTERNAL|did not answer" ; exit $${PIPESTATUS[0]}) || exit 1; \
	done

# The Python `lifetimes` library the BG/NBD fit is compared with, pinned.
BENCH_VENV ?= $(HOME)/.cache/retention-bench-venv
bench-tools:
	@if [ ! -x $(BENCH_VENV)/bin/python ] || ! $(BENCH_VENV)/bin/python -c "import lifetimes" 2>/dev/null; then \
		python3 -m venv $(BENCH_VENV) && \
		$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check lifetimes==0.11.3 numpy==1.26.4 \
			scipy==1.11.4 pandas==1.5.3 autograd==1.7.0 dill==0.3.8 python-dateutil==2.9.0.post0 \
			pytz==2024.1 six==1.16.0; \
	fi

# Start the local PostgreSQL and Redis if they are installed but stopped.
services:
	@bash scripts/ensure-services.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# buf and playwright-core are pinned exactly in package.json. No lock file: npm's
# lock for buf's per-platform optional packages does not survive `npm ci` on
# another platform.
node-tools:
	@if [ ! -x node_modules/.bin/buf ] || [ ! -d node_modules/playwright-core ]; then npm install --no-audit --no-fund --no-package-lock; fi

proto-lint: node-tools
	npx --no-install buf lint

# The API reference of each package, generated from the protos and their comments
# (buf build keeps the comments in the image). docs-check fails on a stale reference.
docs: node-tools
	@mkdir -p target/docs
	@npx --no-install buf build -o target/docs/image.json
	python3 scripts/gen_api_docs.py target/docs/image.json proto

# No module of a service names a module that names it back (scripts/module_cycles.py
# reads the crate::/super:: paths of every file).
layers-check:
	@python3 scripts/module_cycles.py

docs-check: node-tools
	@rm -rf target/docs && mkdir -p target/docs/out
	@npx --no-install buf build -o target/docs/image.json
	@python3 scripts/gen_api_docs.py target/docs/image.json target/docs/out > /dev/null
	@cd target/docs/out && for f in retention/*/v1/README.md; do \
		cmp -s "$$f" "../../../proto/$$f" || { echo "docs-check: proto/$$f is stale; run make docs"; exit 1; }; \
	done; echo "docs-check: API reference up to date"

# Published v1 contracts never break: compare with the contract as last accepted
# (the commit in proto/BREAKING_BASE). A deliberate break goes through an issue and
# moves the base.
proto-breaking: node-tools
	@base=$$(cat proto/BREAKING_BASE); \
	if git cat-file -e "$$base^{commit}" 2>/dev/null; then \
		npx --no-install buf breaking --against ".git#ref=$$base"; \
	else \
		echo "proto-breaking: base $$base is not in this clone's history (shallow?); check skipped"; \
	fi

nextest: deploy-tools
	$(CARGO) nextest run --workspace --no-fail-fast

# Deployment artefacts, checked offline: kustomize builds of both overlays (kubectl's
# built-in kustomize), strict schema validation (PyPI kubernetes-validate for the
# Kubernetes kinds; kubernetes-validate only warns about kinds it does not know, so
# the prometheus-operator objects are split off and validated against the CRD
# schemas vendored in deploy/monitoring/crds), a security scan of the manifests and
# the Dockerfile (PyPI checkov; any failed check fails, skips carry their reason in
# place), the compose file, and monitoring: promtool checks and unit-tests the
# alerting rules, the PrometheusRule must be the rule file's current wrapping,
# runbook links must resolve, the Grafana dashboard must parse and its queries too.
# The tools live outside the clone, so CI installs them once.
DEPLOY_VENV ?= $(HOME)/.cache/retention-deploy-venv
K8S_VERSION ?= 1.30.0
# promtool from PATH, else the copy deploy-tools puts in the venv.
PROMTOOL ?= $(shell command -v promtool 2>/dev/null || echo $(DEPLOY_VENV)/bin/promtool)
# The Prometheus server the metrics test starts (PROMETHEUS_BIN tells it where).
PROMETHEUS ?= $(shell command -v prometheus 2>/dev/null || echo $(DEPLOY_VENV)/bin/prometheus)
export PROMETHEUS_BIN := $(PROMETHEUS)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# promtool comes from the Debian package `prometheus`, unpacked rather than installed:
# `apt-get install prometheus` enables and starts a Prometheus server (systemd unit
# or init script, port 9090) and recommends prometheus-node-exporter, which starts
# too; only the promtool binary is needed. The package lists are refreshed only when
# they do not know the package.
deploy-tools:
	@if [ ! -x $(DEPLOY_VENV)/bin/checkov ] || [ ! -x $(DEPLOY_VENV)/bin/kubernetes-validate ]; then \
		python3 -m venv $(DEPLOY_VENV) && \
		$(DEPLOY_VENV)/bin/pip install -q kubernetes-validate==1.37.0 checkov==3.3.30; \
	fi
	@command -v kubectl >/dev/null || { echo "deploy-check needs kubectl (its built-in kustomize)"; exit 1; }
	@if [ ! -x "$(PROMTOOL)" ]; then \
		command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { \
			echo "deploy-check needs promtool: put it on PATH (it is in every Prometheus release tarball)"; exit 1; }; \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		if ! apt-cache show prometheus >/dev/null 2>&1; then $(SUDO) apt-get update -qq || exit 1; fi && \
		(cd "$$tmp" && apt-get download -q -o APT::Sandbox::User="$$(id -un)" prometheus) && \
		dpkg-deb -x "$$tmp"/prometheus_*.deb "$$tmp/root" && \
		mkdir -p "$$(dirname $(PROMTOOL))" && \
		install -m 0755 "$$tmp/root/usr/bin/promtool" "$(PROMTOOL)" && \
		install -m 0755 "$$tmp/root/usr/bin/prometheus" "$(PROMETHEUS)" && \
		"$(PROMTOOL)" --version | head -1; \
	fi
	@# The metrics test scrapes the services with a real Prometheus server.
	@if [ ! -x "$(PROMETHEUS)" ]; then \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		if ! apt-cache show prometheus >/dev/null 2>&1; then $(SUDO) apt-get update -qq || exit 1; fi && \
		(cd "$$tmp" && apt-get download -q -o APT::Sandbox::User="$$(id -un)" prometheus) && \
		dpkg-deb -x "$$tmp"/prometheus_*.deb "$$tmp/root" && \
		mkdir -p "$$(dirname $(PROMETHEUS))" && \
		install -m 0755 "$$tmp/root/usr/bin/prometheus" "$(PROMETHEUS)"; \
	fi

deploy-check: deploy-tools
	@mkdir -p target/deploy
	@for o in dev prod; do \
		kubectl kustomize deploy/k8s/overlays/$$o > target/deploy/$$o.yaml || exit 1; \
	done
	@# The base with the scrape-annotations component (clusters without the operator).
	@mkdir -p target/deploy/annotations && printf '%s\n' 'resources: [../../../deploy/k8s/base]' \
		'components: [../../../deploy/k8s/components/scrape-annotations]' > target/deploy/annotations/kustomization.yaml
	@kubectl kustomize target/deploy/annotations > target/deploy/annotations.yaml
	$(DEPLOY_VENV)/bin/python scripts/validate_crs.py deploy/monitoring/crds target/deploy/dev.yaml target/deploy/prod.yaml
	$(DEPLOY_VENV)/bin/kubernetes-validate --strict -k $(K8S_VERSION) --quiet target/deploy/dev.core.yaml target/deploy/prod.core.yaml target/deploy/annotations.yaml
	$(DEPLOY_VENV)/bin/checkov --framework kubernetes -f target/deploy/dev.yaml -f target/deploy/prod.yaml --compact --quiet --skip-download
	$(DEPLOY_VENV)/bin/checkov --framework dockerfile -f deploy/Dockerfile --compact --quiet --skip-download
	$(DEPLOY_VENV)/bin/python scripts/check_compose.py
	$(PROMTOOL) check rules deploy/monitoring/retention-rules.yaml
	cd deploy/monitoring && $(PROMTOOL) test rules retention-rules.test.yaml
	$(DEPLOY_VENV)/bin/python scripts/monitoring.py check
	@$(DEPLOY_VENV)/bin/python scripts/monitoring.py dashboard-rules target/deploy/dashboard-queries.yaml
	$(PROMTOOL) check rules target/deploy/dashboard-queries.yaml
