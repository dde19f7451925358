"""Past one machine: the pieces scaling out shares.

- ``pgbouncer.py``  a PgBouncer (Debian's package) in front of a cluster, with its own ini
                    and auth file: what the scaling tests and benchmarks/bench_pgbouncer.py
                    run, and a worked example of the settings pgmodels needs
- ``pools.py`` (in proxy/) routes ``pgmodels serve``'s reads across standbys

The standby command is cli/standby.py; the design for N machines is the README's
"Scaling out" section.
"""
