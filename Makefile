# Front for the PGXS build in extension/ (also what `pgxn install` runs in a
# distribution zip). The developer tasks live in ./dev.sh.

PG_CONFIG ?= pg_config
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' python_udfs/pgmodels/_version.py)

all install uninstall installcheck clean:
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) $@

# A PGXN distribution zip of the committed tree, with META.json at its root.
dist:
	$(MAKE) -C extension META.json
	mkdir -p dist
	git archive --format=zip --prefix=pgmodels-$(VERSION)/ \
	  --add-file=extension/META.json -o dist/pgmodels-$(VERSION).zip HEAD

.PHONY: all install uninstall installcheck clean dist
