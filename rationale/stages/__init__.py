"""The pipeline's stages and the tools beside them, one module each.

Every stage is one module with one pydantic config and one `run` function:

    run(config, run_dir, *, [force,] progress) -> report    works in a run directory
    run(config, *, progress) -> report                      reads and writes the files named

A stage that works in a run directory (`rationale.run_dir`) records its resolved config and
a manifest there and resumes what a kill interrupted; a tool reads and writes the files it
is given. Each is declared once, in `rationale.registry`, which the command line and
`rationale run` read.
"""
