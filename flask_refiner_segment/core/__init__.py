"""The pure core: values, completions, messages and the URL policy, with no
Flask, database or network (checked by an import contract in setup.cfg)."""
