.PHONY: run test demo bench bench-index crawl
run:    ## start the dashboard against $$REGISTRYUI_REGISTRY_URL
	./scripts/run
test:   ## the whole test suite (real registry, real browser)
	./scripts/test
demo:   ## a local registry with sample images, and the dashboard against it
	./scripts/demo
bench:  ## time the repository page on 1,000 tags / 2,000 repositories
	./scripts/bench
bench-index:  ## the index's figures: 1,000 / 20,000 tags, 10,000 repositories (pages, sync, events, search)
	./scripts/bench index
crawl:  ## same pages before and after a change: make crawl BEFORE=<a checkout, e.g. git worktree add /tmp/before main>
	./scripts/crawl both --before "$(BEFORE)" --after . --out-dir .crawl
