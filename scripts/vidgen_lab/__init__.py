"""Research tooling beside the scripts, not installed with vidgen: the shapes recipe runner (`shapes_recipe`), its
evaluation harness (`shapes_eval`), the benchmarks against diffusers (`bench`) and their shared timing and report
helpers (`benchmarking`). `python scripts/X.py` finds it because scripts/ is then on sys.path; the tests, through
pytest's `pythonpath`. Reports go where the command is run from (`docs/benchmarks.md` there), or to `--docs DIR`.
"""
