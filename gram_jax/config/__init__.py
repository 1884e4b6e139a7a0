"""The run config, one module per section: its defaults, the rules of its single fields, its
checks across fields, and the typed views the stages read (levanter's habit of keeping a
section's defaults, checks and build together). `gram_jax.configlib` assembles the sections
into a stage's config, validates it and describes it."""
