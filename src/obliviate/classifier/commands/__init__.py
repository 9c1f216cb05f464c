"""The classifier module's CLI verbs, `obliviate steal` and `obliviate invert` (listed in `obliviate.cli.VERBS`).

Each module has `add_arguments(parser)` and `run(args)`, like `obliviate.commands.<verb>`; `common` holds what
both verbs share.
"""
