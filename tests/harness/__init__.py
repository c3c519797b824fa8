"""The shared test harness: runs a case study's Kubeflow resources on this machine.

Modules: cases (discovery), manifests (strict validation), jobs (training jobs as local
processes), katib (Experiments with Optuna samplers), pipelines (kfp.local), serving (KServe
servers on loopback), badrequests (the bad-request suite every server passes), notebooks
(jupytext drift and papermill), kind (the cluster lane).
`python -m tests.harness --help` is the command-line entry point.
"""
