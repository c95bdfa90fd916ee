# Targets do what the README says. FUZZTIME sets how long each fuzz target runs
# (a duration such as 30s, or a count of inputs such as 10000x, as CI uses),
# SOAKTIME how long the soak runs.
FUZZTIME ?= 30s
SOAKTIME ?= 10m

.PHONY: run test lint bench fuzz soak

run:
	go run ./cmd/relay

test:
	go test -race -count=1 -timeout 20m ./...

lint:
	gofmt -l . | tee /dev/stderr | (! read)
	go vet ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

fuzz:
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# 500 simulated add-in clients against the relay binary for SOAKTIME, then the
# 250,000-address limiter flood: the relay's RSS, goroutines and fds must stay flat.
soak:
	go test -count=1 -timeout 60m -v -run 'TestSoak$$|TestAddressFloodBeyondCap$$' ./internal/resiliencetest -soak -soak-duration $(SOAKTIME)
